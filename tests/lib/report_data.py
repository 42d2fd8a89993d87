# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fleet's facts for the HTML report tests: drift, GPUs, runtimes in every state, a failed
operation, an unreachable host, and strings from hosts that try to inject HTML."""
from __future__ import annotations

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'
MB = 1.0


def _model(name, rev, size=90_868_376, **kw):
    return dict({"name": name, "provider": "huggingface", "revision": rev, "size_bytes": size,
                 "size_gb": round(size / 1e9, 3), "status": "installed", "active": False, "active_runtime": None}, **kw)


def _usage(used_gb, quota_gb, gpus=()):
    return {"disk_usage_gb": used_gb, "disk_limit_gb": quota_gb, "disk_usage_percent": round(100 * used_gb / quota_gb, 1),
            "disk_free_gb": 412.5, "memory_total_gb": 64.0, "memory_usage_percent": 41.0, "cpu_usage_percent": 12.0,
            "gpu_count": len(gpus), "models_count": 2, "gpus": list(gpus)}


def _gpu(index, used, total):
    return {"index": index, "name": "NVIDIA A100-SXM4-40GB", "uuid": f"GPU-{index}", "utilization_percent": 50.0,
            "vram_used_mb": used, "vram_total_mb": total, "vram_usage_percent": round(100 * used / total, 1)}


def fleet_facts() -> dict:
    return {
        "gpu-a": {
            "venom_models": [_model("org/chat", "a" * 40, active=True, active_runtime="vllm"), _model("org/embed", "c" * 40)],
            "venom_usage": _usage(42.0, 50, [_gpu(0, 36000.0, 40960.0), _gpu(1, 12000.0, 40960.0)]),
            "venom_runtimes": {"vllm": {"configured": True, "running": True, "healthy": True, "health": "ok",
                                        "model": "org/chat", "mode": "systemd", "port": 8000, "restarts": 0,
                                        "gpus": [0, 1], "rss_bytes": 3 * 2 ** 30, "vram_bytes": 48000 * 2 ** 20},
                               "ollama": {"configured": False, "running": False, "healthy": False}},
            "venom_operations": []},
        "gpu-b": {
            "venom_models": [_model("org/chat", "b" * 40), _model(EVIL, "d" * 40)],
            "venom_usage": _usage(47.5, 50),
            "venom_runtimes": {"vllm": {"configured": True, "running": True, "healthy": False, "mode": "systemd",
                                        "health": f"HTTP 500 {EVIL}", "model": "org/chat", "port": 8000, "restarts": 3},
                               "ollama": {"configured": True, "running": False, "healthy": False, "mode": "process",
                                          "health": "not running", "port": 11434}},
            "venom_operations": [{"id": "1", "type": "install", "model": "org/broken", "status": "failed",
                                  "error": f"not found {EVIL}", "finished_at": "2026-11-22T10:00:00.000Z"}]},
        EVIL: None,
    }
