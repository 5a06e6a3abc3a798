-- Argo CD resource health check for reasoning-operator.dev/ReasoningRun.
-- Argo CD runs this with the live object as `obj` and expects {status, message} back.
-- Install: resource.customizations.health.reasoning-operator.dev_ReasoningRun in argocd-cm
-- (deploy/argocd/argocd-cm-patch.yaml carries this exact script).
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function with_progress(text, status)
  if status.progress ~= nil and status.progress ~= "" then
    return text .. ": " .. status.progress
  end
  return text
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the run"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  if status.headlineAccuracy ~= nil then
    hs.message = "Succeeded: " .. status.headlineAccuracy
  else
    hs.message = "Succeeded"
  end
  return hs
end

if phase == "Failed" then
  hs.status = "Degraded"
  local failed = condition(status, "Failed")
  if status.failureReason ~= nil then
    hs.message = status.failureReason
  elseif failed ~= nil and failed.message ~= nil then
    hs.message = failed.message
  else
    hs.message = "Failed"
  end
  return hs
end

if phase == "Pending" or phase == "Curating" or phase == "Training" or phase == "Serving" or phase == "Evaluating" then
  -- spec.serving.replicas 0 is a deliberate pause: nothing will serve until the run is changed.
  local serving = condition(status, "ServingReady")
  if serving ~= nil and serving.status == "False" and serving.reason == "ScaledToZero" then
    hs.status = "Suspended"
    hs.message = serving.message or "serving scaled to zero"
    return hs
  end
  hs.status = "Progressing"
  hs.message = with_progress(phase, status)
  return hs
end

hs.status = "Unknown"
hs.message = "Unrecognised phase " .. tostring(phase)
return hs
