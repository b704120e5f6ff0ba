"""Benchmark: ``camloc evaluate`` vs a straightforward evaluation script, same run, same numbers.

Baseline (named ``plain-script``, this file's ``--baseline`` mode, run as its own process): PIL
decode + ``resize((224, 224), BICUBIC)`` (the model's stretch preprocessing), a DataLoader with the
same number of workers, batched forward of the same efficientnet_lite0 with a forward hook on its
last feature map, CAM of the ground-truth class from the classifier weights, ``cv2.resize``
bicubic to 224 x 224, min-max normalisation, and the wsolevaluation ``BoxEvaluator`` loop (per
image and threshold: ``cv2.threshold``, ``cv2.findContours``, largest contour's ``boundingRect``,
IoU against every GT box) at interval 0.01. It prints its MaxBoxAccV2, which must equal camloc's.

camloc: ``python -m camloc evaluate DATASET --workers W --gallery 0`` (writes report.json,
per_image.jsonl and report.html).

Both are timed as subprocesses: wall time, and CPU time (user + system of the child, from
``resource.getrusage(RUSAGE_CHILDREN)``), best of ``--rounds`` interleaved rounds.

``--memory``: peak RSS of ``evaluate_state`` (tiny random model, 32 px input) over 1,000 vs 20,000
samples (the same few image files under distinct ids), each in a fresh process, with the CPU
allocator setting the ``camloc`` command applies (:func:`camloc.runtime.tune_cpu_allocator`).

Run:  python benchmarks/bench_evaluate.py /work/shared/data/imagenet-val-dev --rounds 2
      python benchmarks/bench_evaluate.py --memory
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def baseline(dataset: Path, workers: int, batch: int) -> None:
    import cv2
    import numpy as np
    import torch
    from PIL import Image

    import camloc

    meta = dataset / "metadata"
    ids = [ln.strip() for ln in (meta / "image_ids.txt").open() if ln.strip()]
    labels = dict(ln.strip().split(",") for ln in (meta / "class_labels.txt").open() if ln.strip())
    sizes = {}
    for ln in (meta / "image_sizes.txt").open():
        if ln.strip():
            i, w, h = ln.strip().split(",")
            sizes[i] = (int(w), int(h))
    boxes: dict[str, list[list[float]]] = {}
    for ln in (meta / "localization.txt").open():
        if ln.strip():
            i, *b = ln.strip().split(",")
            boxes.setdefault(i, []).append([float(v) for v in b])

    model = camloc.load_model("efficientnet_lite0", device="cpu").module.eval()
    weight = model.classifier.weight.detach()
    mean = torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1)
    std = torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1)

    class DS(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(ids)

        def __getitem__(self, k: int):
            im = Image.open(dataset / ids[k]).convert("RGB").resize((224, 224), Image.BICUBIC)
            x = torch.from_numpy(np.asarray(im, np.float32) / 255.0).permute(2, 0, 1)
            return (x - mean) / std, int(labels[ids[k]]), k

    feats = {}
    model.bn2.register_forward_hook(lambda m, i, o: feats.__setitem__("f", o))
    thresholds = np.arange(0, 1, 0.01)
    iou_thr = (30, 50, 70)
    correct = np.zeros((len(iou_thr), len(thresholds)))
    n = 0
    loader = torch.utils.data.DataLoader(DS(), batch_size=batch, num_workers=workers)
    with torch.inference_mode():
        for x, y, ks in loader:
            model(x)
            f = feats["f"]
            cams = torch.einsum("nk,nkhw->nhw", weight[y], f).numpy()
            for cam, k in zip(cams, ks.tolist()):
                sm = cv2.resize(cam, (224, 224), interpolation=cv2.INTER_CUBIC)
                lo, hi = sm.min(), sm.max()
                sm = (sm - lo) / (hi - lo) if hi > lo else np.zeros_like(sm)
                w, h = sizes[ids[k]]
                gt = np.array([[int(b[0] * 224 / w), int(b[1] * 224 / h), int(b[2] * 224 / w),
                                int(b[3] * 224 / h)] for b in boxes[ids[k]]])
                u8 = (sm * 255).astype(np.uint8)
                for t, tau in enumerate(thresholds):
                    _, th = cv2.threshold(u8, int(tau * np.max(u8)), 255, cv2.THRESH_BINARY)
                    cs, _ = cv2.findContours(th, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
                    if not cs:
                        box = np.array([0, 0, 0, 0])
                    else:
                        c = max(cs, key=cv2.contourArea)
                        bx, by, bw, bh = cv2.boundingRect(c)
                        box = np.array([bx, by, min(bx + bw, 223), min(by + bh, 223)])
                    ix0 = np.maximum(box[0], gt[:, 0])
                    iy0 = np.maximum(box[1], gt[:, 1])
                    ix1 = np.minimum(box[2], gt[:, 2])
                    iy1 = np.minimum(box[3], gt[:, 3])
                    inter = np.clip(ix1 - ix0 + 1, 0, None) * np.clip(iy1 - iy0 + 1, 0, None)
                    a = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
                    ag = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
                    iou = (inter / (a + ag - inter)).max()
                    for j, d in enumerate(iou_thr):
                        correct[j, t] += iou >= d / 100
                n += 1
    v2 = float(np.mean([correct[j].max() * 100 / n for j in range(len(iou_thr))]))
    print(json.dumps({"images": n, "maxboxacc_v2": v2}))


def memory(n: int) -> None:
    import numpy as np
    import torch
    from PIL import Image

    import camloc
    from camloc.data.sample import Dataset, Sample
    from camloc.evaluation.evaluate import evaluate_state
    from camloc.models.archs import build_arch
    from camloc.runtime import tune_cpu_allocator

    tune_cpu_allocator()  # as the camloc command does (heap kept for large blocks)

    d = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    paths = []
    for k in range(8):
        p = d / f"{k}.png"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    samples = [Sample(f"img/{i:06d}.png", paths[i % 8], i % 3, [[2, 2, 20, 20]], (32, 32))
               for i in range(n)]
    ds = Dataset("mem", d, "csv", None, samples, ["a", "b", "c"])
    torch.manual_seed(0)
    model = camloc.wrap(build_arch("tiny-cnn", num_classes=3, width=8),
                        preprocess={"input_size": [32, 32], "fit": "stretch"})
    st = evaluate_state(model, ds, batch_size=64, workers=0, check_dataset=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"images": st.images, "peak_rss_mb": round(peak, 1)}))


def timed(cmd: list[str]) -> tuple[float, float, str]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", type=Path, nargs="?")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--memory-one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.baseline:
        return baseline(a.dataset, a.workers, a.batch)
    if a.memory_one:
        return memory(a.memory_one)
    print(f"# load average at start: {os.getloadavg()[0]:.2f}, cpus {os.cpu_count()}")
    if a.memory:
        for n in (1000, 20000):
            _, _, out = timed([sys.executable, __file__, "--memory-one", str(n)])
            print(out.strip())
        return
    rows: dict[str, list[tuple[float, float]]] = {"plain-script": [], "camloc evaluate": []}
    v2 = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.rounds):
            wall, cpu, out = timed([sys.executable, __file__, str(a.dataset), "--baseline",
                                    "--workers", str(a.workers), "--batch", str(a.batch)])
            rows["plain-script"].append((wall, cpu))
            v2["plain-script"] = json.loads(out.strip().splitlines()[-1])["maxboxacc_v2"]
            wall, cpu, _ = timed([sys.executable, "-m", "camloc", "evaluate", str(a.dataset),
                                  "--workers", str(a.workers), "--batch-size", str(a.batch),
                                  "--device", "cpu", "--gallery", "0", "-o", tmp])
            rows["camloc evaluate"].append((wall, cpu))
            v2["camloc evaluate"] = json.loads(
                (Path(tmp) / "report.json").read_text())["localization"]["maxboxacc_v2"]["value"]
    base_wall = min(w for w, _ in rows["plain-script"])
    base_cpu = min(c for _, c in rows["plain-script"])
    print("\n| pipeline | MaxBoxAccV2 | wall s (best) | CPU s (best) | speed-up (wall) | CPU ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, vals in rows.items():
        w = min(x for x, _ in vals)
        c = min(y for _, y in vals)
        print(f"| {name} | {v2[name]:.2f} | {w:.1f} | {c:.1f} | {base_wall / w:.2f}x | "
              f"{c / base_cpu:.2f}x |")


if __name__ == "__main__":
    main()
