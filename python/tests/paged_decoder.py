"""A tiny decoder-only transformer over a *paged* KV cache in vLLM's FlashAttention layout (one tensor per layer,
[2, num_blocks, block_size, heads, head_dim]; a request's positions map to blocks through its block table), so the
vLLM connector's hand-off and store paths can be checked by the logits that come out. Random weights, fixed seed."""
import torch

VOCAB, D_MODEL, HEADS, LAYERS = 97, 32, 2, 2
HEAD_DIM = D_MODEL // HEADS


def layer_name(i: int) -> str:
    return f"model.layers.{i}.self_attn.attn"


class PagedDecoder(torch.nn.Module):
    def __init__(self, block_size: int, max_len: int = 128, seed: int = 4321):
        super().__init__()
        g = torch.Generator().manual_seed(seed)

        def p(*shape):
            return torch.nn.Parameter(torch.randn(*shape, generator=g) * 0.2)
        self.block_size = block_size
        self.embed, self.pos, self.head = p(VOCAB, D_MODEL), p(max_len, D_MODEL), p(D_MODEL, VOCAB)
        self.qkv = torch.nn.ParameterList([p(D_MODEL, 3 * D_MODEL) for _ in range(LAYERS)])
        self.out = torch.nn.ParameterList([p(D_MODEL, D_MODEL) for _ in range(LAYERS)])
        self.mlp1 = torch.nn.ParameterList([p(D_MODEL, 4 * D_MODEL) for _ in range(LAYERS)])
        self.mlp2 = torch.nn.ParameterList([p(4 * D_MODEL, D_MODEL) for _ in range(LAYERS)])

    def new_caches(self, num_blocks: int):
        return {layer_name(i): torch.zeros(2, num_blocks, self.block_size, HEADS, HEAD_DIM) for i in range(LAYERS)}

    def _slots(self, block_table, start: int, n: int):
        return [(block_table[p // self.block_size], p % self.block_size) for p in range(start, start + n)]

    @torch.no_grad()
    def forward(self, tokens, start: int, block_table, caches) -> torch.Tensor:
        """Runs ``tokens`` at positions start.. (KV of 0..start already in the blocks of ``block_table``), writes
        their K/V into those blocks and returns the last token's logits."""
        tokens = torch.as_tensor(tokens)
        n = tokens.shape[0]
        x = self.embed[tokens] + self.pos[start:start + n]
        every = self._slots(block_table, 0, start + n)
        for i in range(LAYERS):
            cache = caches[layer_name(i)]
            q, k, v = (x @ self.qkv[i]).split(D_MODEL, dim=-1)
            for j, (b, s) in enumerate(self._slots(block_table, start, n)):
                cache[0, b, s] = k[j].view(HEADS, HEAD_DIM)
                cache[1, b, s] = v[j].view(HEADS, HEAD_DIM)
            keys = torch.stack([cache[0, b, s] for b, s in every]).transpose(0, 1)     # [heads, pos, dim]
            values = torch.stack([cache[1, b, s] for b, s in every]).transpose(0, 1)
            q = q.view(n, HEADS, HEAD_DIM).transpose(0, 1)
            scores = q @ keys.transpose(1, 2) / HEAD_DIM ** 0.5
            mask = torch.ones(n, start + n, dtype=torch.bool).tril(diagonal=start)
            att = (scores.masked_fill(~mask, float("-inf")).softmax(-1) @ values).transpose(0, 1).reshape(n, D_MODEL)
            x = x + att @ self.out[i]
            x = x + torch.relu(x @ self.mlp1[i]) @ self.mlp2[i]
        return x[-1] @ self.head

    def decode(self, logits, position: int, block_table, caches, steps: int):
        """Greedy decoding after a prompt whose last logits are ``logits``: each step's logits, stacked."""
        out = [logits]
        for _ in range(steps):
            token = int(out[-1].argmax())
            out.append(self.forward([token], position, block_table, caches))
            position += 1
        return torch.stack(out)
