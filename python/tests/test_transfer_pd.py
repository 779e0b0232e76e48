"""Prefill -> decode hand-off in two processes (examples/pd_handoff.py): the decode process continues from KV it
received through the transfer engine and produces the same next-token logits as one process computing everything."""
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXAMPLE = os.path.join(REPO, "examples", "pd_handoff.py")
sys.path.insert(0, os.path.join(REPO, "examples"))


def test_decode_continues_from_transferred_kv_with_the_logits_of_one_process(tmp_path):
    import pd_handoff
    prompt = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38]
    reference = pd_handoff.run_local(prompt, steps=8)

    out = tmp_path / "logits.npy"
    decode = subprocess.Popen([sys.executable, EXAMPLE, "decode", "--steps", "8", "--out", str(out), "--timeout", "60"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        endpoint = json.loads(decode.stdout.readline())["endpoint"]
        prefill = subprocess.run([sys.executable, EXAMPLE, "prefill", "--peer", endpoint, "--prompt", ",".join(map(str, prompt)),
                                  "--timeout", "60"], capture_output=True, text=True, timeout=120)
        assert prefill.returncode == 0, prefill.stderr
        assert json.loads(prefill.stdout.splitlines()[-1])["positions"] == len(prompt)
        _, err = decode.communicate(timeout=120)
        assert decode.returncode == 0, err
    finally:
        if decode.poll() is None:
            decode.kill()
            decode.wait(10)
    got = np.load(out)
    assert got.shape == reference.shape == (8, pd_handoff.VOCAB)
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-5)
    assert [int(r.argmax()) for r in got] == [int(r.argmax()) for r in reference]


def test_decoding_needs_the_transferred_kv():
    # Guards the test above against passing vacuously: the same decode from an empty cache gives other logits.
    import pd_handoff
    import torch
    prompt = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38]
    model = pd_handoff.TinyDecoder()
    prefilled = pd_handoff.TinyDecoder.new_cache()
    first = int(model(torch.tensor(prompt), 0, prefilled).argmax())
    with_kv = pd_handoff.decode_steps(model, prefilled, len(prompt), first, 4)
    without = pd_handoff.decode_steps(model, pd_handoff.TinyDecoder.new_cache(), len(prompt), first, 4)
    assert not np.allclose(with_kv, without, atol=1e-3)
