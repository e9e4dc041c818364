/**
 * Gemma (gemma-2b/7b: multi-query attention on the 2b, GeGLU, embeddings × sqrt(d_model), RMSNorm with
 * 1 + w) and Gemma 2 (Gemma Scope's models: additionally grouped-query attention, query_pre_attn_scalar,
 * attention and final-logit soft-capping, sliding-window attention on alternate layers, and norms after
 * attention and after the MLP): config.json mappings onto the shared rotary decoder (decoder.ts).
 *
 * Differences from TransformerLens, both following transformers: Gemma's config says `hidden_act: "gelu"`
 * and computes the tanh approximation (as TransformerLens also does); Gemma 2's sliding layers are 0, 2,
 * 4, ... as transformers has them, where TransformerLens's configs make layer 0 global (this only matters
 * beyond the 4096-token window of the real models).
 */
import { UserError } from '../../pipeline/errors.js';
import { decoderConfig, decoderFamily, optionalPositiveInt, optionalPositiveNumber } from './decoder.js';
import { decoderActivation, layersOr } from './llama.js';

const GEMMA_VARIANT = {
  normOffset: true,
  scaleEmbedding: true,
  qkvBias: false,
  oBias: false,
  mlpBias: false,
} as const;

export const gemmaFamily = decoderFamily(
  {
    name: 'gemma',
    modelTypes: ['gemma'],
    architectures: ['GemmaForCausalLM'],
    parseConfig(j, file) {
      // transformers reads Gemma's legacy "gelu" as the tanh approximation (configuration_gemma.py).
      const act = j.hidden_activation ?? j.hidden_act ?? 'gelu_pytorch_tanh';
      const nLayers = Number(j.num_hidden_layers);
      return decoderConfig(j, file, {
        family: 'gemma',
        act: act === 'gelu' ? 'gelu_new' : decoderActivation({ act }, 'act', file, 'gelu_pytorch_tanh'),
        tiedByDefault: true,
        variant: {
          ...GEMMA_VARIANT,
          postNorms: false,
          attnSoftCap: null,
          finalSoftCap: null,
          slidingWindow: null,
          slidingLayers:
            Number.isInteger(nLayers) && nLayers > 0 ? new Array<boolean>(nLayers).fill(false) : [],
        },
      });
    },
  },
  { ln2: 'post_attention_layernorm' },
);

/** A number field whose absence means the family's default and whose null means "off". */
function capOr(j: Record<string, unknown>, key: string, file: string, dflt: number): number | null {
  return key in j ? optionalPositiveNumber(j, key, file) : dflt;
}

export const gemma2Family = decoderFamily(
  {
    name: 'gemma2',
    modelTypes: ['gemma2'],
    architectures: ['Gemma2ForCausalLM'],
    parseConfig(j, file) {
      const nLayers = Number(j.num_hidden_layers);
      const scalar = j.query_pre_attn_scalar ?? 256;
      if (typeof scalar !== 'number' || !(scalar > 0)) {
        throw new UserError(`${file}: field "query_pre_attn_scalar" must be a positive number`);
      }
      const act = j.hidden_activation ?? j.hidden_act ?? 'gelu_pytorch_tanh';
      return decoderConfig(j, file, {
        family: 'gemma2',
        act: act === 'gelu' ? 'gelu_new' : decoderActivation({ act }, 'act', file, 'gelu_pytorch_tanh'),
        tiedByDefault: true,
        variant: {
          ...GEMMA_VARIANT,
          postNorms: true,
          attnScale: scalar ** -0.5,
          attnSoftCap: capOr(j, 'attn_logit_softcapping', file, 50),
          finalSoftCap: capOr(j, 'final_logit_softcapping', file, 30),
          slidingWindow: 'sliding_window' in j ? optionalPositiveInt(j, 'sliding_window', file) : 4096,
          // transformers: layers 0, 2, 4, ... slide (configuration_gemma2.py).
          slidingLayers: layersOr(j, file, nLayers, (l) => l % 2 === 0),
        },
      });
    },
  },
  {
    ln2: 'pre_feedforward_layernorm',
    postAttnNorm: 'post_attention_layernorm',
    postMlpNorm: 'post_feedforward_layernorm',
  },
);
