"""GPU readiness: the torch k-means backend and MVQ fine-tuning on CUDA agree with the CPU.

Runs, on the CPU and on ``--device`` (default ``cuda``), side by side:

* masked 2:8 k-means with the torch backend on a tie-free input (well separated clusters,
  the same initial codebook): assignments must be identical, codebooks equal to 1e-4;
* a few MVQ fine-tuning steps (SGD on the codebooks, int8 fake quantization on, the fast
  weight rebuild) of a torchvision ResNet-18 compressed on the CPU: losses and codebooks must
  agree to a float32 tolerance after every step, then the eval-mode outputs.

Prints the time of each part on both devices and the ratio, and exits with status 1 if a
check fails. Without a CUDA device it prints why it skipped and exits 0, so it can run
unchanged everywhere (``--device cpu`` runs every check CPU against CPU).

    python tools/bench/cuda_check.py [--device cuda] [--steps 3] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import copy
import sys

import torch
import torch.nn.functional as F
import torchvision
from common import timed, write_json  # same folder (tools/bench/common.py)

import mvq_plugin as mvq
from mvq_plugin.core import masked_kmeans, nm_mask


def tie_free_vectors(n: int = 200_000, k: int = 256, d: int = 8, seed: int = 0):
    """Clusters far apart relative to their spread, and the true centres as the initial
    codebook, so that every nearest codeword is unambiguous in float32 on any device."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=gen) * 10
    labels = torch.randint(k, (n,), generator=gen)
    x = centres[labels] + 0.01 * torch.randn(n, d, generator=gen)
    mask = nm_mask(x.abs(), 2, 8)
    return x, mask, centres.clone()


def check_kmeans(device: torch.device, iters: int) -> dict:
    x, mask, init = tie_free_vectors()

    def run(dev):
        return masked_kmeans(x.to(dev), mask.to(dev), init.shape[0], iters=iters, tol=0.0,
                             init=init.to(dev), backend='torch')
    ref, t_cpu = timed(lambda: run(torch.device('cpu')), torch.device('cpu'))
    run(device)  # warm-up (CUDA context, kernels)
    out, t_dev = timed(lambda: run(device), device)
    same = torch.equal(ref.assignments, out.assignments.cpu())
    err = float((ref.codebook - out.codebook.cpu()).abs().max())
    return dict(n=x.shape[0], k=init.shape[0], iters=iters, assignments_identical=same,
                codebook_max_abs_diff=err, ok=same and err <= 1e-4, cpu_s=t_cpu,
                device_s=t_dev, ratio_cpu_over_device=t_cpu / t_dev)


def check_finetune(device: torch.device, steps: int, batch: int = 16) -> dict:
    torch.manual_seed(0)
    # 16 classes: the classifier's outputs split into out_channel sub-vectors of 8
    model = torchvision.models.resnet18(num_classes=16)
    mvq.compress(model, mvq.MVQConfig(block_size=8, num_codewords=64, n=2, m=8,
                                      kmeans_iters=5, seed=0))
    mvq.set_codebook_quant(model, True)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(batch, 3, 32, 32, generator=gen),
                torch.randint(16, (batch,), generator=gen)) for _ in range(steps)]
    runs = {}
    for name, dev in (('cpu', torch.device('cpu')), ('device', device)):
        m = copy.deepcopy(model).to(dev)
        m.train()
        opt = torch.optim.SGD(mvq.codebook_param_groups(m), lr=0.05, momentum=0.9)
        losses, seconds = [], 0.0
        for x, y in batches:
            def step():
                loss = F.cross_entropy(m(x.to(dev)), y.to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                return float(loss.detach())
            loss, t = timed(step, dev)
            losses.append(loss)
            seconds += t
        m.eval()
        with torch.no_grad():
            logits = m(batches[0][0].to(dev)).cpu()
        books = {n: q.codebook.detach().cpu() for n, q in mvq.quantized_layers(m).items()}
        runs[name] = dict(losses=losses, seconds=seconds, logits=logits, books=books)
    cpu, dev = runs['cpu'], runs['device']
    loss_err = max(abs(a - b) for a, b in zip(cpu['losses'], dev['losses']))
    book_err = max(float((cpu['books'][n] - dev['books'][n]).abs().max()) for n in cpu['books'])
    logit_err = float((cpu['logits'] - dev['logits']).abs().max())
    ok = loss_err <= 1e-3 and book_err <= 1e-3 and logit_err <= 1e-2
    return dict(steps=steps, batch=batch, layers=len(cpu['books']), loss_max_abs_diff=loss_err,
                codebook_max_abs_diff=book_err, eval_logits_max_abs_diff=logit_err, ok=ok,
                cpu_s_per_step=cpu['seconds'] / steps, device_s_per_step=dev['seconds'] / steps,
                ratio_cpu_over_device=cpu['seconds'] / dev['seconds'])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    p.add_argument('--device', default='cuda')
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--kmeans-iters', type=int, default=10)
    p.add_argument('--out')
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print('cuda_check: skipped, no CUDA device is available to torch '
              f'(torch {torch.__version__}, CUDA build {torch.version.cuda}); nothing was '
              'compared. Run it on a machine with a GPU, or --device cpu for a CPU self-check.')
        return 0
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'
    print(f'cuda_check on {name} vs CPU ({torch.get_num_threads()} threads), '
          f'torch {torch.__version__}')
    result = dict(device=name, kmeans=check_kmeans(device, args.kmeans_iters),
                  finetune=check_finetune(device, args.steps))
    for part in ('kmeans', 'finetune'):
        r = result[part]
        print(f'{part:9s} {"ok" if r["ok"] else "MISMATCH"}  ' + '  '.join(
            f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}' for k, v in r.items()
            if k != 'ok'))
    if args.out:
        write_json(args.out, result, indent=2)
    return 0 if all(result[p]['ok'] for p in ('kmeans', 'finetune')) else 1


if __name__ == '__main__':
    sys.exit(main())
