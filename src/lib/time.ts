const known = new Map<string, string>(
  [...Intl.supportedValuesOf('timeZone'), 'UTC'].map((zone) => [zone.toLowerCase(), zone]),
);

/**
 * The IANA name to store for a time zone the runtime knows, or null. The user's own spelling is
 * kept when it is a valid Area/City name (ICU would rename Asia/Kolkata to the legacy
 * Asia/Calcutta); offsets and abbreviations ('+05:30', 'IST', 'EST') are refused, since they carry
 * no daylight-saving rules or are ambiguous.
 */
export function canonicalTimeZone(input: string): string | null {
  const listed = known.get(input.toLowerCase());
  if (listed) return listed;
  if (!/^[A-Za-z]+(\/[A-Za-z0-9_+-]+){1,2}$/.test(input)) return null;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: input });
    return input;
  } catch {
    return null;
  }
}
