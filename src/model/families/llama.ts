/**
 * Llama (2 and 3.x, with Llama 3's RoPE scaling), Mistral (sliding window on every layer) and Qwen2/2.5
 * (q/k/v biases, usually tied embeddings): config.json mappings onto the shared rotary decoder
 * (decoder.ts), which holds their weights and forward.
 */
import { UserError } from '../../pipeline/errors.js';
import type { ActivationFunction } from '../config.js';
import { decoderConfig, decoderFamily, flag, optionalPositiveInt, slidingLayersOf } from './decoder.js';

/** HF `hidden_act` values of these families and what they compute. */
const ACTIVATIONS: Record<string, ActivationFunction> = {
  silu: 'silu',
  swish: 'silu',
  gelu: 'gelu',
  gelu_new: 'gelu_new',
  gelu_pytorch_tanh: 'gelu_new',
  relu: 'relu',
};

export function decoderActivation(
  j: Record<string, unknown>,
  key: string,
  file: string,
  dflt: string,
): ActivationFunction {
  const name = j[key] ?? dflt;
  const act = typeof name === 'string' ? ACTIVATIONS[name] : undefined;
  if (act === undefined) {
    throw new UserError(
      `${file}: field "${key}" ${JSON.stringify(name)} is not supported (supported: ${Object.keys(ACTIVATIONS).join(', ')})`,
    );
  }
  return act;
}

const noVariant = {
  normOffset: false,
  scaleEmbedding: false,
  postNorms: false,
  attnSoftCap: null,
  finalSoftCap: null,
} as const;

const PRE_MLP_NORM = { ln2: 'post_attention_layernorm' };

export const llamaFamily = decoderFamily(
  {
    name: 'llama',
    modelTypes: ['llama'],
    architectures: ['LlamaForCausalLM'],
    parseConfig(j, file) {
      const bias = flag(j, 'attention_bias', file, false);
      const nLayers = Number(j.num_hidden_layers);
      return decoderConfig(j, file, {
        family: 'llama',
        act: decoderActivation(j, 'hidden_act', file, 'silu'),
        tiedByDefault: false,
        variant: {
          ...noVariant,
          qkvBias: bias,
          oBias: bias,
          mlpBias: flag(j, 'mlp_bias', file, false),
          slidingWindow: null,
          slidingLayers: new Array<boolean>(Number.isInteger(nLayers) && nLayers > 0 ? nLayers : 0).fill(
            false,
          ),
        },
      });
    },
  },
  PRE_MLP_NORM,
);

export const mistralFamily = decoderFamily(
  {
    name: 'mistral',
    modelTypes: ['mistral'],
    architectures: ['MistralForCausalLM'],
    parseConfig(j, file) {
      const window = optionalPositiveInt(j, 'sliding_window', file);
      const nLayers = Number(j.num_hidden_layers);
      return decoderConfig(j, file, {
        family: 'mistral',
        act: decoderActivation(j, 'hidden_act', file, 'silu'),
        tiedByDefault: false,
        variant: {
          ...noVariant,
          qkvBias: false,
          oBias: false,
          mlpBias: false,
          slidingWindow: window,
          slidingLayers: layersOr(j, file, nLayers, () => window !== null),
        },
      });
    },
  },
  PRE_MLP_NORM,
);

export const qwen2Family = decoderFamily(
  {
    name: 'qwen2',
    modelTypes: ['qwen2'],
    architectures: ['Qwen2ForCausalLM'],
    parseConfig(j, file) {
      const useWindow = flag(j, 'use_sliding_window', file, false);
      const window = useWindow ? optionalPositiveInt(j, 'sliding_window', file) : null;
      const maxWindowLayers = j.max_window_layers == null ? 28 : Number(j.max_window_layers);
      const nLayers = Number(j.num_hidden_layers);
      const layers = layersOr(j, file, nLayers, (l) => useWindow && l >= maxWindowLayers);
      if (layers.some(Boolean) && window === null && j.sliding_window == null) {
        throw new UserError(`${file}: layer_types has sliding layers but "sliding_window" is null`);
      }
      return decoderConfig(j, file, {
        family: 'qwen2',
        act: decoderActivation(j, 'hidden_act', file, 'silu'),
        tiedByDefault: false,
        variant: {
          ...noVariant,
          qkvBias: true,
          oBias: false,
          mlpBias: false,
          slidingWindow: window ?? optionalPositiveInt(j, 'sliding_window', file),
          slidingLayers: layers,
        },
      });
    },
  },
  PRE_MLP_NORM,
);

/** Sliding flags per layer from layer_types, else from the family's rule; an invalid layer count is left to decoderConfig. */
export function layersOr(
  j: Record<string, unknown>,
  file: string,
  nLayers: number,
  rule: (layer: number) => boolean,
): boolean[] {
  if (!Number.isInteger(nLayers) || nLayers <= 0) return [];
  return slidingLayersOf(j, file, nLayers, rule);
}
