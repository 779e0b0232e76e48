"""The model of bench/ttft.py: a Llama-architecture decoder in torch with random weights, its paged KV cache,
logit comparison, and a check of the model against transformers' LlamaForCausalLM (``hf_check``)."""
import math

BLOCK_TOKENS = 16   # vLLM's default page (block) size

SHAPES = {
    # layers, hidden, heads, kv heads, head dim, MLP width, vocabulary, rope theta
    "tiny": dict(layers=4, hidden=64, heads=4, kv_heads=2, head_dim=16, intermediate=128, vocab=512, theta=10000.0),
    "llama-3-8b": dict(layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128, intermediate=14336, vocab=128256,
                       theta=500000.0),
}


class Llama:
    """A Llama decoder with random weights (``seed``); ``forward`` computes tokens [start, start + T) of a
    sequence whose KV for [0, start) is already in ``cache``, writes theirs there, and returns the last
    token's logits (fp32)."""

    def __init__(self, shape: dict, device: str = "cpu", dtype=None, seed: int = 0):
        import torch
        self.torch = torch
        self.s = shape
        self.device = device
        self.dtype = dtype or (torch.bfloat16 if device != "cpu" else torch.float32)
        g = torch.Generator(device=device)
        g.manual_seed(seed)

        def w(*dims, scale=None):
            t = torch.randn(*dims, generator=g, device=device, dtype=torch.float32 if device == "cpu" else self.dtype)
            return t.mul_(scale if scale is not None else 1.0 / math.sqrt(dims[-1])).to(self.dtype)

        h, d, hq, hk, f = shape["hidden"], shape["head_dim"], shape["heads"], shape["kv_heads"], shape["intermediate"]
        self.embed = w(shape["vocab"], h, scale=1.0)
        self.layers = [dict(ln1=torch.ones(h, device=device, dtype=self.dtype),
                            wqkv=w((hq + 2 * hk) * d, h), wo=w(h, hq * d),
                            ln2=torch.ones(h, device=device, dtype=self.dtype),
                            wgu=w(2 * f, h), wd=w(h, f)) for _ in range(shape["layers"])]
        self.norm = torch.ones(h, device=device, dtype=self.dtype)
        self.head = w(shape["vocab"], h)
        self.sdpa = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
        self._suffix_attention = self._pick_suffix_attention() if self.sdpa is not None else None

    def _rms(self, x, weight):
        t = self.torch
        xf = x.float()
        return (xf * t.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * weight

    def _rope(self, start: int, count: int):
        t = self.torch
        d = self.s["head_dim"]
        inv = 1.0 / (self.s["theta"] ** (t.arange(0, d, 2, device=self.device, dtype=t.float32) / d))
        ang = t.outer(t.arange(start, start + count, device=self.device, dtype=t.float32), inv)
        return ang.cos()[:, None, :], ang.sin()[:, None, :]

    def _pick_suffix_attention(self):
        """How a pass that starts after a cached prefix (q shorter than k: the causal mask aligned to the
        bottom right) attends: the fastest of these that this torch runs, tried once on tiny tensors —
        ``causal_lower_right`` with grouped-query heads as they are (flash / memory-efficient kernels, torch 2.5+),
        ``causal_lower_right`` with the KV heads repeated, else an explicit boolean mask (the math kernel: it
        materialises the scores; a 128-token pass after 16k tokens took ~35 ms on an H100 with it, ~14 ms with
        the first)."""
        t = self.torch
        try:
            from torch.nn.attention.bias import causal_lower_right
        except ImportError:
            causal_lower_right = None
        q = t.zeros(1, 4, 2, 16, device=self.device, dtype=self.dtype)
        kv = t.zeros(1, 2, 5, 16, device=self.device, dtype=self.dtype)
        for name, gqa in (("lower-right, grouped heads", True), ("lower-right", False)):
            if causal_lower_right is None:
                break
            try:
                extra = {"enable_gqa": True} if gqa else {}
                k = kv if gqa else kv.repeat_interleave(2, dim=1)
                self.sdpa(q, k, k, attn_mask=causal_lower_right(2, 5), **extra)
                return name, gqa, causal_lower_right
            except (TypeError, RuntimeError, ValueError):
                continue
        return "boolean mask", False, None

    def _attend(self, q, k, v, start: int):
        """q [T, Hq, D] at positions [start, start + T); k, v [start + T, Hkv, D]: causal attention."""
        t = self.torch
        rep = self.s["heads"] // self.s["kv_heads"]
        q = q.transpose(0, 1)                                          # [Hq, T, D]
        k = k.transpose(0, 1)                                          # [Hkv, S, D]
        v = v.transpose(0, 1)
        count, total = q.shape[1], k.shape[1]
        if self.sdpa is not None:
            _, gqa, lower_right = self._suffix_attention
            if start == 0 or not gqa:
                k, v = k.repeat_interleave(rep, dim=0), v.repeat_interleave(rep, dim=0)   # [Hq, S, D]
            if start == 0:
                out = self.sdpa(q[None], k[None], v[None], is_causal=True)[0]
            elif lower_right is not None:
                extra = {"enable_gqa": True} if gqa else {}
                out = self.sdpa(q[None], k[None], v[None], attn_mask=lower_right(count, total), **extra)[0]
            else:
                mask = t.arange(total, device=self.device)[None, :] <= t.arange(start, start + count, device=self.device)[:, None]
                out = self.sdpa(q[None], k[None], v[None], attn_mask=mask)[0]
        else:   # torch before 2.0 (the CPU test machine): the same maths, written out
            k, v = k.repeat_interleave(rep, dim=0), v.repeat_interleave(rep, dim=0)
            scores = (q.float() @ k.float().transpose(1, 2)) / math.sqrt(q.shape[-1])
            mask = t.arange(total, device=self.device)[None, :] > t.arange(start, start + count, device=self.device)[:, None]
            out = (scores.masked_fill(mask, float("-inf")).softmax(-1) @ v.float()).to(q.dtype)
        return out.transpose(0, 1).reshape(count, -1)

    def forward(self, ids, start: int, cache, before_layer=None):
        t = self.torch
        s = self.s
        hq, hk, d = s["heads"], s["kv_heads"], s["head_dim"]
        with t.no_grad():
            ids = t.as_tensor(ids, device=self.device, dtype=t.long)
            count = ids.shape[0]
            x = self.embed[ids]
            cos, sin = self._rope(start, count)
            for i, lw in enumerate(self.layers):
                if before_layer is not None:
                    before_layer(i)
                h = self._rms(x, lw["ln1"])
                q, k, v = (h @ lw["wqkv"].T).split((hq * d, hk * d, hk * d), dim=-1)
                q = self._rot(q.view(count, hq, d), cos, sin)
                k = self._rot(k.view(count, hk, d), cos, sin)
                keys, values = cache.write(i, start, k, v.view(count, hk, d))
                x = x + self._attend(q, keys, values, start) @ lw["wo"].T
                h = self._rms(x, lw["ln2"])
                gate, up = (h @ lw["wgu"].T).chunk(2, dim=-1)
                x = x + (t.nn.functional.silu(gate) * up) @ lw["wd"].T
            return (self._rms(x[-1:], self.norm) @ self.head.T)[0].float()

    def capture(self, count: int, start: int, cache):
        """``forward`` of ``count`` tokens at ``start`` into ``cache``, captured as one CUDA graph (as vLLM
        captures its forward passes): returns ``run(ids) -> logits``, which replays it. A forward of a few
        hundred tokens is otherwise bound by launching ~1,600 kernels from Python, not by the GPU. The capture
        writes (and warms) positions [start, start + count) of ``cache``; replays rewrite them, and read
        whatever the cache holds before ``start`` at that moment."""
        t = self.torch
        ids = t.zeros(count, dtype=t.long, device=self.device)
        side = t.cuda.Stream()
        side.wait_stream(t.cuda.current_stream())
        with t.cuda.stream(side):
            for _ in range(2):
                self.forward(ids, start, cache)
        t.cuda.current_stream().wait_stream(side)
        graph = t.cuda.CUDAGraph()
        with t.cuda.graph(graph):
            out = self.forward(ids, start, cache)

        def run(new_ids):
            ids.copy_(t.as_tensor(new_ids, dtype=t.long))
            graph.replay()
            return out.clone()
        return run

    def _rot(self, x, cos, sin):
        t = self.torch
        half = x.shape[-1] // 2
        xf = x.float()
        a, b = xf[..., :half], xf[..., half:]
        return t.cat((a * cos - b * sin, b * cos + a * sin), dim=-1).to(x.dtype)


class PagedCache:
    """Per layer a ``[2, blocks, 16, kv_heads, head_dim]`` tensor (vLLM's FlashAttention layout); a
    sequence's block j is block j of every layer."""

    @classmethod
    def like(cls, other: "PagedCache", device: str) -> "PagedCache":
        """An uninitialised cache of ``other``'s shape on ``device``."""
        c = cls.__new__(cls)
        c.blocks, c.half = other.blocks, other.half
        c.all = other.all.new_empty(other.all.shape, device=device)
        c.layers = list(c.all.unbind(0))
        return c

    def __init__(self, model: Llama, tokens: int):
        t = model.torch
        s = model.s
        self.blocks = -(-tokens // BLOCK_TOKENS)
        # one allocation, every layer a view of it: one region to register, one GPU allocation to locate
        self.all = t.zeros(s["layers"], 2, self.blocks, BLOCK_TOKENS, s["kv_heads"], s["head_dim"], device=model.device,
                           dtype=model.dtype)
        self.layers = list(self.all.unbind(0))
        self.half = BLOCK_TOKENS * s["kv_heads"] * s["head_dim"] * self.layers[0].element_size()   # K (or V) of a block

    def write(self, layer: int, start: int, k, v):
        """Stores the KV of tokens [start, start + T) and returns the K and V of [0, start + T)."""
        kv = self.layers[layer]
        flat = kv.view(2, -1, kv.shape[3], kv.shape[4])
        end = start + k.shape[0]
        flat[0, start:end] = k
        flat[1, start:end] = v
        return flat[0, :end], flat[1, :end]

    def pieces(self, layers, blocks: int):
        """Per block in [0, blocks), the addresses of its K and V slices in each of ``layers``, in order, and
        their sizes (built arithmetically: an engine has its block table at hand)."""
        half, span = self.half, self.blocks * self.half
        bases = [self.layers[i].data_ptr() for i in layers]
        sizes = [half] * (2 * len(bases))
        return ([[a for base in bases for a in (base + b * half, base + span + b * half)] for b in range(blocks)],
                [sizes] * blocks)

    def copy_blocks_from(self, other: "PagedCache", blocks: int) -> None:
        for mine, theirs in zip(self.layers, other.layers):
            mine[:, :blocks].copy_(theirs[:, :blocks])

    def equal_blocks(self, other: "PagedCache", blocks: int) -> bool:
        return all(bool((a[:, :blocks] == b[:, :blocks]).all()) for a, b in zip(self.layers, other.layers))


def compare(logits, expected) -> dict:
    """Bit-identity, max abs difference and argmax agreement of two logit vectors."""
    t = logits
    return {"identical": bool(t.shape == expected.shape and (t.view(-1).view(dtype_int(t)) == expected.view(-1).view(dtype_int(t))).all()),
            "max_abs_diff": float((t - expected).abs().max()), "argmax_agree": int(t.argmax()) == int(expected.argmax())}


def dtype_int(t):
    """The integer dtype of ``t``'s element size: comparing through it compares bits (a NaN equals itself)."""
    import torch
    return {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]


def hf_check(device: str, tokens: int = 64, seed: int = 0) -> str:
    """The compact model against Hugging Face's ``LlamaForCausalLM`` with the same (tiny-shape, fp32) weights:
    one prefill's last-token logits compared. A line saying what was found, or why nothing could be."""
    try:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM
    except Exception as ex:  # noqa: BLE001 - reported, not raised: the check is optional
        return f"HF check: transformers not importable ({type(ex).__name__}: {ex})"
    try:
        shape = SHAPES["tiny"]
        ours = Llama(shape, device, dtype=torch.float32, seed=seed)
        hq, hk, d, f = shape["heads"], shape["kv_heads"], shape["head_dim"], shape["intermediate"]
        config = LlamaConfig(vocab_size=shape["vocab"], hidden_size=shape["hidden"], intermediate_size=f,
                             num_hidden_layers=shape["layers"], num_attention_heads=hq, num_key_value_heads=hk,
                             head_dim=d, rms_norm_eps=1e-5, max_position_embeddings=4 * tokens, tie_word_embeddings=False,
                             attention_bias=False, mlp_bias=False, rope_theta=shape["theta"],
                             rope_parameters={"rope_type": "default", "rope_theta": shape["theta"]})
        hf = LlamaForCausalLM(config).to(device=device, dtype=torch.float32).eval()
        state = {"model.embed_tokens.weight": ours.embed, "model.norm.weight": ours.norm, "lm_head.weight": ours.head}
        for i, lw in enumerate(ours.layers):
            q, k, v = lw["wqkv"].split((hq * d, hk * d, hk * d), dim=0)
            gate, up = lw["wgu"].split((f, f), dim=0)
            pre = f"model.layers.{i}."
            state.update({pre + "input_layernorm.weight": lw["ln1"], pre + "post_attention_layernorm.weight": lw["ln2"],
                          pre + "self_attn.q_proj.weight": q, pre + "self_attn.k_proj.weight": k,
                          pre + "self_attn.v_proj.weight": v, pre + "self_attn.o_proj.weight": lw["wo"],
                          pre + "mlp.gate_proj.weight": gate, pre + "mlp.up_proj.weight": up,
                          pre + "mlp.down_proj.weight": lw["wd"]})
        missing, unexpected = hf.load_state_dict(state, strict=False)
        if missing or unexpected:
            return f"HF check: weights did not map (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
        ids = torch.randint(0, shape["vocab"], (tokens,), generator=torch.Generator().manual_seed(seed + 1))
        with torch.no_grad():
            theirs = hf(ids[None].to(device)).logits[0, -1].float()
        mine = ours.forward(ids.tolist(), 0, PagedCache(ours, tokens))
        c = compare(mine, theirs)
        return (f"HF check (transformers LlamaForCausalLM, tiny shape, fp32, {tokens} tokens, {device}): last-token logits "
                f"{'bit-identical' if c['identical'] else 'max abs diff %.3g' % c['max_abs_diff']}, argmax "
                f"{'same' if c['argmax_agree'] else 'DIFFERS'}")
    except Exception as ex:  # noqa: BLE001 - an API change of transformers: say so, the bench goes on
        return f"HF check failed: {type(ex).__name__}: {ex}"
