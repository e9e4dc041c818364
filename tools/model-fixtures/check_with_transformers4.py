"""Checks the family fixtures with transformers 4.x, the version that wrote the configs on the hub.

make_family_fixtures.py writes most config.json files in the 4.x spelling (rope_theta / rope_scaling, rotary_pct,
torch_dtype) by rewriting what transformers 5 saved, and checks them with transformers 5 only. This script loads
every fixture folder with transformers 4.57 and compares its logits with reference.safetensors, and its tokenizer ids
with reference.json. Expected: every 4.x-spelled folder matches except gemma's; the two transformers-5 spelled folders
(qwen2/model, llama/model-sharded) do not, because 4.x does not read `rope_parameters` and falls back to its
default rope_theta (and, for llama, no llama3 scaling) -- which shows that the spelling matters to a loader; and
gemma/model does not, because its config says hidden_act "gelu" (as google/gemma-2b's does), which transformers 5
and TransformerLens take as the tanh approximation and transformers 4.57 as the exact GELU.

Run from the repository root. The local package mirror has no huggingface_hub < 1.0, which transformers 4.57 pins,
so it was run like this (the version check disabled in that throwaway copy only):

    /tmp/famvenv/bin/pip install --no-deps --target /tmp/tf4 transformers==4.57.6
    /tmp/famvenv/bin/pip install --target /tmp/tf4extra requests
    /tmp/famvenv/bin/pip install --no-deps --target /tmp/tf4extra tokenizers==0.22.2
    sed -i 's/^        require_version_core(deps\\[pkg\\])/        (None if pkg == "huggingface-hub" else require_version_core(deps[pkg]))/' \\
        /tmp/tf4/transformers/dependency_versions_check.py
    PYTHONPATH=/tmp/tf4:/tmp/tf4extra /tmp/famvenv/bin/python tools/model-fixtures/check_with_transformers4.py
"""

import json
import os
import sys

import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FIX = os.path.join(ROOT, "test", "fixtures", "families")
EXPECTED_MISMATCH = {
    # transformers-5 spelling: 4.x ignores rope_parameters (default rope_theta, no llama3 scaling)
    ("qwen2", "model"),
    ("llama", "model-sharded"),
    # config.json says hidden_act "gelu" like google/gemma-2b's; transformers 5 (configuration_gemma.py) and
    # TransformerLens (gelu_new for gemma-2b) read it as the tanh approximation, 4.57 runs the exact erf GELU
    # (the conversion was dropped in transformers PR #35235 and restored in 5.x)
    ("gemma", "model"),
}


def main() -> None:
    assert transformers.__version__.startswith("4."), transformers.__version__
    print("transformers", transformers.__version__)
    failures = []
    for family in sorted(os.listdir(FIX)):
        fdir = os.path.join(FIX, family)
        if not os.path.isdir(fdir):
            continue
        ref = load_file(os.path.join(fdir, "reference.safetensors"))
        with open(os.path.join(fdir, "reference.json")) as f:
            info = json.load(f)
        tokens = ref["tokens"].long()
        for sub in info["folders"]:
            folder = os.path.join(fdir, sub)
            m = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="eager")
            m.eval()
            with torch.no_grad():
                logits = m(input_ids=tokens).logits.float()
            err = (logits - ref["logits"]).abs().max().item()
            tok = AutoTokenizer.from_pretrained(folder)
            tok_ok = all(
                tok(c["text"])["input_ids"] == c["ids_with_special_tokens"]
                and tok(c["text"], add_special_tokens=False)["input_ids"] == c["ids_without_special_tokens"]
                for c in info["tokenizer_cases"]
            )
            match = err < 1e-5
            expected = (family, sub) not in EXPECTED_MISMATCH
            style = info["folders"][sub]["config_style"]
            print(f"{family}/{sub} ({style} config): logits max abs diff {err:.2e} "
                  f"({'matches' if match else 'DIFFERS'}{'' if match == expected else ' -- UNEXPECTED'}), "
                  f"tokenizer ids {'equal' if tok_ok else 'DIFFER'}")
            if match != expected or not tok_ok:
                failures.append(f"{family}/{sub}")
    if failures:
        sys.exit(f"unexpected: {failures}")
    print("all as expected")


if __name__ == "__main__":
    main()
