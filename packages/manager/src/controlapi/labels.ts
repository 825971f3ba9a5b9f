/** Label filters of List calls: every wanted key present, with the wanted value unless that is empty. */
export function sameLabels(want: Readonly<Record<string, string>>, have: Readonly<Record<string, string>> | undefined): boolean {
  for (const [k, v] of Object.entries(want)) {
    if (!have || !(k in have)) return false;
    if (v !== '' && have[k] !== v) return false;
  }
  return true;
}
