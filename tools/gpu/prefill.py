"""Times the prefill of a Llama-3-8B-shaped model on this GPU: the denominator of the KV hand-off's
share in a request (issue 17, item 3). Random bf16 weights (std 0.02, never zeros), PyTorch's SDPA
attention, the KV cache kept as a prefill worker keeps it; CUDA events around each forward, the
median of 5 after 3 warm-ups. Prints a JSON line last. Usage: python3 tools/gpu/prefill.py [tokens]
"""

import json
import statistics
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

tokens = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
config = LlamaConfig(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=8192,
    rope_theta=500000.0,
)
config._attn_implementation = "sdpa"
torch.manual_seed(0)
torch.set_default_dtype(torch.bfloat16)
with torch.device("cuda"):
    model = LlamaForCausalLM(config)
model.eval()
params = sum(p.numel() for p in model.parameters())
ids = torch.randint(0, config.vocab_size, (1, tokens), device="cuda")
times = []
with torch.inference_mode():
    for i in range(8):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end))
        if not torch.isfinite(out.logits).all():
            raise SystemExit("non-finite logits")
kv_bytes = 2 * config.num_hidden_layers * tokens * config.num_key_value_heads * (config.hidden_size // config.num_attention_heads) * 2
print(
    json.dumps(
        {
            "device": torch.cuda.get_device_name(0),
            "torch": torch.__version__,
            "params": params,
            "tokens": tokens,
            "prefill_ms_p50": statistics.median(times),
            "prefill_ms": [round(t, 3) for t in times],
            "kv_bytes": kv_bytes,
        }
    )
)
