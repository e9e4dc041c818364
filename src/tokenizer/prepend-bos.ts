/**
 * TransformerLens's `default_prepend_bos` by Hugging Face `model_type`. TransformerLens 2.18 sets it False
 * for Bloom, Qwen, Qwen2 and Qwen3 (loading_from_pretrained.py, their architecture branches); every other
 * family falls to the default True (lines 2283-2285), Pythia/GPT-NeoX included although its tokenizer adds
 * no BOS of its own.
 */
const NO_BOS_BY_DEFAULT: ReadonlySet<string> = new Set(['bloom', 'qwen', 'qwen2', 'qwen3']);

export function defaultPrependBos(modelType: string): boolean {
  return !NO_BOS_BY_DEFAULT.has(modelType);
}
