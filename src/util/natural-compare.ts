/** Compares names with their numbers as numbers: topk-k8 before topk-k16 before topk-k32. */
export function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
