/**
 * Hugging Face environment settings, read the way `huggingface_hub` reads them so that our cache is the
 * same cache Python tools fill (and vice versa).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

export type Env = Readonly<Record<string, string | undefined>>;

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

function expandHome(path: string): string {
  return path === '~' || path.startsWith('~/') ? join(homedir(), path.slice(1)) : path;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value.trim() !== '' ? value : undefined;
}

/** `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`. */
export function hfHome(env: Env = process.env): string {
  const home = nonEmpty(env.HF_HOME);
  if (home) return expandHome(home);
  return join(expandHome(nonEmpty(env.XDG_CACHE_HOME) ?? '~/.cache'), 'huggingface');
}

/** The hub cache: `$HF_HUB_CACHE`, else the legacy `$HUGGINGFACE_HUB_CACHE`, else `hfHome()/hub`. */
export function hfHubCache(env: Env = process.env): string {
  const cache = nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE);
  return cache ? expandHome(cache) : join(hfHome(env), 'hub');
}

/** `$HF_ENDPOINT` (mirrors, tests) without a trailing slash, else https://huggingface.co. */
export function hfEndpoint(env: Env = process.env): string {
  return (nonEmpty(env.HF_ENDPOINT) ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

function isTrue(value: string | undefined): boolean {
  return value !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(value.trim().toUpperCase());
}

/** `HF_HUB_OFFLINE` (or the older `TRANSFORMERS_OFFLINE`) set to 1/on/yes/true forbids network access. */
export function isHubOffline(env: Env = process.env): boolean {
  return isTrue(nonEmpty(env.HF_HUB_OFFLINE) ?? env.TRANSFORMERS_OFFLINE);
}

/** Access token for gated or private repositories, from the environment only. */
export function hfToken(env: Env = process.env): string | undefined {
  return nonEmpty(env.HF_TOKEN) ?? nonEmpty(env.HUGGING_FACE_HUB_TOKEN);
}
