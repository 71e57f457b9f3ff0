"""Prompt-dedup tuning on labelled pairs: `python -m bench.dedup [--pairs PATH] [--out PATH]`.

Embeds both prompts of every pair with the bundled all-MiniLM-L6-v2, then prints, over a sweep of cosine
thresholds, the merge rate on paraphrases and the false merges on hard negatives, without and with the
salient-detail guard. The index that finds candidates at scale is measured by `python -m bench.dedup_scale`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from composition.dedup.matching import DEFAULT_THRESHOLD, is_duplicate, normalize_prompt, salient_conflict

PAIRS = Path("tests/data/prompt_pairs.jsonl")
OUT = Path("var/bench/dedup.json")
THRESHOLDS = [round(0.70 + 0.02 * step, 2) for step in range(14)]


def load_pairs(path: Path) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def cosines(pairs: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings of every pair's two sides and their cosines."""
    from config.families import EmbedderArgs
    from models.embedder import Embedder

    embedder = Embedder(EmbedderArgs())
    left, right = embedder.embed([p["a"] for p in pairs]), embedder.embed([p["b"] for p in pairs])
    return left, right, (left * right).sum(axis=1)


def rates(pairs: list[dict], cos: np.ndarray, threshold: float, guard: bool) -> dict:
    merged = [is_duplicate(p["a"], p["b"], c, threshold) if guard else
              normalize_prompt(p["a"]) == normalize_prompt(p["b"]) or c >= threshold for p, c in zip(pairs, cos)]
    para = [m for m, p in zip(merged, pairs) if p["label"] == "paraphrase"]
    neg = [m for m, p in zip(merged, pairs) if p["label"] == "negative"]
    return dict(merge_rate=round(sum(para) / len(para), 4), false_merges=int(sum(neg)),
                false_merge_rate=round(sum(neg) / len(neg), 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    pairs = load_pairs(args.pairs)
    left, right, cos = cosines(pairs)
    paraphrase = np.array([p["label"] == "paraphrase" for p in pairs])
    print(f"{len(pairs)} pairs: {paraphrase.sum()} paraphrases, {(~paraphrase).sum()} hard negatives")
    print(f"cosine median: paraphrases {np.median(cos[paraphrase]):.3f}, negatives {np.median(cos[~paraphrase]):.3f}")

    sweep = [dict(threshold=t, cosine_only=rates(pairs, cos, t, False), guarded=rates(pairs, cos, t, True))
             for t in THRESHOLDS]
    print(f"\n{'threshold':>9} | {'cosine only':^23} | {'cosine + guard':^23}")
    print(f"{'':>9} | {'merge':>8} {'false merges':>14} | {'merge':>8} {'false merges':>14}")
    for row in sweep:
        plain, guarded = row["cosine_only"], row["guarded"]
        print(f"{row['threshold']:>9.2f} | {plain['merge_rate']:>8.1%} {plain['false_merges']:>14} |"
              f" {guarded['merge_rate']:>8.1%} {guarded['false_merges']:>14}")

    chosen = rates(pairs, cos, DEFAULT_THRESHOLD, True)
    conflicts = [salient_conflict(p["a"], p["b"]) for p in pairs]
    missed = [(round(float(c), 3), conflict, p["a"], p["b"]) for p, c, conflict in zip(pairs, cos, conflicts)
              if p["label"] == "paraphrase" and not is_duplicate(p["a"], p["b"], c)]
    caught: dict[str, list[int]] = {}
    for p, conflict in zip(pairs, conflicts):
        if p["label"] == "negative":
            caught.setdefault(p["category"], [0, 0])[conflict is not None] += 1
    print(f"\nDEFAULT_THRESHOLD {DEFAULT_THRESHOLD}: paraphrase merge rate {chosen['merge_rate']:.1%}, "
          f"false merges {chosen['false_merges']} ({chosen['false_merge_rate']:.1%})")
    print("guard catches per negative category: " + ", ".join(f"{k} {v[1]}/{sum(v)}" for k, v in caught.items()))
    for c, conflict, a, b in missed:
        print(f"  missed paraphrase (cos {c}, conflict {conflict}): {a!r} / {b!r}")

    composed = [p for p in pairs if "style" in p]
    cue_pairs = [dict(p, a=p["cue_a"], b=p["cue_b"]) for p in composed]
    normalised = [dict(a=normalize_prompt(p["a"]), b=normalize_prompt(p["b"])) for p in cue_pairs]
    cues = rates(cue_pairs, cosines(normalised)[2], DEFAULT_THRESHOLD, True)
    print(f"composed (style + cue), matched on the cue within the style's scope as souls are: {len(composed)} pairs, "
          f"paraphrase merge rate {cues['merge_rate']:.1%}, false merges {cues['false_merges']}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = dict(pairs=len(pairs), threshold=DEFAULT_THRESHOLD, chosen=chosen, composed_cues=cues, sweep=sweep,
                  missed_paraphrases=missed, negatives_caught=caught)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
