"""Launch helpers shared by ``tools/train.py`` and ``tools/test.py``."""
from __future__ import annotations

import torch
import torch.distributed as torch_dist
from mmengine.config import Config

__all__ = ['setup_cpu_distributed']


def setup_cpu_distributed(cfg: Config) -> bool:
    """Lets mmengine's ``pytorch`` launcher run on a machine without CUDA.

    mmengine 0.10 calls ``torch.cuda.set_device`` while initialising the process group and
    gives DDP ``device_ids=[LOCAL_RANK]``; both fail on CPU. With ``launcher != 'none'`` and
    no CUDA device, this initialises the (gloo) process group itself, which mmengine then
    reuses, and wraps the model with ``device_ids=None``.

    Args:
        cfg: The run's config (``launcher``, ``env_cfg.dist_cfg.backend``,
            ``model_wrapper_cfg``); modified in place.

    Returns:
        Whether it did anything.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return False
    backend = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('backend', 'nccl')
    if backend != 'gloo':
        raise ValueError(f'env_cfg.dist_cfg.backend={backend!r} needs CUDA devices and this '
                         "machine has none: set env_cfg.dist_cfg.backend='gloo'")
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'))
    wrapper.setdefault('device_ids', None)
    wrapper.setdefault('broadcast_buffers', False)
    cfg.model_wrapper_cfg = wrapper
    return True
