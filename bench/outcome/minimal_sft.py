"""The minimal-script anchor (shared/reference-figures.md): plain transformers + PEFT, no project code.

LoRA r64 / alpha 128 on q,k,v,o,gate,up,down, AdamW lr 2e-4, cosine with 5% warmup, 600 steps x 32 samples
drawn at random (seeded) from the same curated `training.jsonl` the pipeline trains on, padded batches,
loss on completion tokens only, bf16 autocast. Saves the adapter for the same evaluation.

    python bench/outcome/minimal_sft.py --model DIR --data training.jsonl --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16 if device == "cuda" else None)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=64, lora_alpha=128, lora_dropout=0.0, target_modules=targets))
    model.to(device).train()

    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    eos = tokenizer.eos_token_id
    samples = []
    for row in rows:  # the curated input is already templated (system prompt, turns, assistant header)
        prompt = tokenizer(row["input"], add_special_tokens=False)["input_ids"]
        completion = tokenizer(row["output"], add_special_tokens=False)["input_ids"] + [eos]
        samples.append((prompt + completion, len(prompt)))

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    warmup = max(1, int(0.05 * args.steps))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    rng = random.Random(args.seed)
    losses: list[float] = []
    began = time.monotonic()
    for _ in range(args.steps):
        batch = rng.sample(samples, args.batch)
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), eos, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (ids, prompt_length) in enumerate(batch):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:])
            mask[i, : len(ids)] = 1
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
    seconds = time.monotonic() - began
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out / "adapter")
    summary = {"steps": args.steps, "batch": args.batch, "seconds": round(seconds, 1), "losses": losses}
    (args.out / "summary.json").write_text(json.dumps(summary) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "losses"} | {"final_loss": losses[-1]}))


if __name__ == "__main__":
    main()
