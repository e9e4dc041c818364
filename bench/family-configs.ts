// Hugging Face config.json files for the benches: Gemma 2 2B's (google/gemma-2-2b's values), and one per
// family at Gemma 2 2B's width (d_model 2304, d_mlp 9216) with that family's own attention layout, vocab
// and layers as the bench asks. Adding a family to bench/family-forward.ts is one entry in FAMILY_SHAPES.

/** google/gemma-2-2b's config.json (stored there in the 4.x spelling), weights declared bfloat16. */
export const GEMMA2_2B: Record<string, unknown> = {
  architectures: ['Gemma2ForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  attn_logit_softcapping: 50.0,
  bos_token_id: 2,
  cache_implementation: 'hybrid',
  eos_token_id: 1,
  final_logit_softcapping: 30.0,
  head_dim: 256,
  hidden_act: 'gelu_pytorch_tanh',
  hidden_activation: 'gelu_pytorch_tanh',
  hidden_size: 2304,
  initializer_range: 0.02,
  intermediate_size: 9216,
  max_position_embeddings: 8192,
  model_type: 'gemma2',
  num_attention_heads: 8,
  num_hidden_layers: 26,
  num_key_value_heads: 4,
  pad_token_id: 0,
  query_pre_attn_scalar: 256,
  rms_norm_eps: 1e-6,
  rope_theta: 10000.0,
  sliding_window: 4096,
  torch_dtype: 'bfloat16',
  use_cache: true,
  vocab_size: 256000,
};

const WIDTH = { hidden_size: 2304, intermediate_size: 9216, max_position_embeddings: 8192 };

/**
 * Each family at Gemma 2 2B's width: heads and KV heads as the family's real models divide their width
 * (Gemma: multi-query like gemma-2b; Llama/Mistral: 128-wide heads, 3 queries per KV head; Qwen2: 9 per
 * KV head with q/k/v biases), ties as their small models have them.
 */
export const FAMILY_SHAPES: Record<string, Record<string, unknown>> = {
  gemma2: { ...GEMMA2_2B },
  gemma: {
    architectures: ['GemmaForCausalLM'],
    model_type: 'gemma',
    ...WIDTH,
    num_attention_heads: 8,
    num_key_value_heads: 1,
    head_dim: 256,
    hidden_act: 'gelu_pytorch_tanh',
    hidden_activation: 'gelu_pytorch_tanh',
    rms_norm_eps: 1e-6,
    rope_theta: 10000.0,
    tie_word_embeddings: true,
  },
  llama: {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    ...WIDTH,
    num_attention_heads: 18,
    num_key_value_heads: 6,
    head_dim: 128,
    hidden_act: 'silu',
    rms_norm_eps: 1e-5,
    rope_theta: 500000.0,
    tie_word_embeddings: false,
  },
  mistral: {
    architectures: ['MistralForCausalLM'],
    model_type: 'mistral',
    ...WIDTH,
    num_attention_heads: 18,
    num_key_value_heads: 6,
    head_dim: 128,
    hidden_act: 'silu',
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    sliding_window: 4096,
    tie_word_embeddings: false,
  },
  qwen2: {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    ...WIDTH,
    num_attention_heads: 18,
    num_key_value_heads: 2,
    hidden_act: 'silu',
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    use_sliding_window: false,
    tie_word_embeddings: true,
  },
  gpt_neox: {
    architectures: ['GPTNeoXForCausalLM'],
    model_type: 'gpt_neox',
    ...WIDTH,
    num_attention_heads: 18,
    hidden_act: 'gelu',
    layer_norm_eps: 1e-5,
    rotary_emb_base: 10000,
    rotary_pct: 0.25,
    use_parallel_residual: true,
    attention_bias: true,
    tie_word_embeddings: false,
  },
};

/** A family's bench config with `layers` layers and a `vocab`-token vocabulary, float32 or bfloat16 weights. */
export function familyConfig(
  family: string,
  layers: number,
  vocab: number,
  dtype: 'bfloat16' | 'float32',
): Record<string, unknown> {
  const shape = FAMILY_SHAPES[family];
  if (shape === undefined) throw new Error(`no bench shape for family ${family}`);
  return { ...shape, num_hidden_layers: layers, vocab_size: vocab, torch_dtype: dtype };
}
