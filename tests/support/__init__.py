"""Test support: a real control plane (``controlplane``) and the fake kubelet's helpers (``fake_kubelet``)."""
