import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

// Maa's words live in lines/<locale>.json as { occasion: { tone: [line, ...] } } so anyone can add
// lines without touching code. Placeholders in braces are filled with the user's real numbers.

export const OCCASIONS = [
  'welcome',
  'day_start',
  'task_completed',
  'goal_met',
  'streak_milestone',
  'streak_at_risk',
  'missed_day',
  'care',
  'comeback',
  'group_rank',
  'friend_overtook',
  'low_motivation',
] as const;
export type Occasion = (typeof OCCASIONS)[number];

export const TONES = ['gentle', 'balanced', 'strict'] as const;
export type Tone = (typeof TONES)[number];

export const LOCALES = ['en', 'hi'] as const;
export type Locale = (typeof LOCALES)[number];

export const PLACEHOLDERS = [
  'name',
  'streak',
  'tasksLeft',
  'hoursLeft',
  'goal',
  'done',
  'days',
  'rank',
] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];

/**
 * Placeholders only some moments know, each with the one occasion whose event carries it (a podium
 * finish names the rank; asking for group_rank does not). A line using one is chosen only when the
 * moment has it, and is preferred then, so every occasion keeps lines that need none.
 */
export const OPTIONAL_PLACEHOLDERS = { rank: 'group_rank' } as const satisfies Partial<
  Record<Placeholder, Occasion>
>;
export type OptionalPlaceholder = keyof typeof OPTIONAL_PLACEHOLDERS;
export const isOptional = (p: string): p is OptionalPlaceholder => Object.hasOwn(OPTIONAL_PLACEHOLDERS, p);

export type Facts = Record<Exclude<Placeholder, OptionalPlaceholder>, string | number> &
  Partial<Record<OptionalPlaceholder, string | number>>;

export const LINE_MAX = 240;

export interface Line {
  /** Stable while the text is unchanged, wherever the line moves in its file. */
  key: string;
  text: string;
}

export type Library = Record<Locale, Record<Occasion, Record<Tone, Line[]>>>;

const lineKey = (locale: Locale, occasion: Occasion, tone: Tone, text: string) =>
  `${locale}.${occasion}.${tone}.${createHash('sha256').update(text).digest('hex').slice(0, 10)}`;

export function readLineFile(locale: Locale): unknown {
  return JSON.parse(readFileSync(new URL(`./lines/${locale}.json`, import.meta.url), 'utf8'));
}

/** Shapes a parsed line file; throws on a missing occasion or tone so a broken file fails at start. */
export function toLibraryLocale(locale: Locale, raw: unknown): Record<Occasion, Record<Tone, Line[]>> {
  const file = raw as Record<string, Record<string, unknown>>;
  const out = {} as Record<Occasion, Record<Tone, Line[]>>;
  for (const occasion of OCCASIONS) {
    const byTone = {} as Record<Tone, Line[]>;
    for (const tone of TONES) {
      const list = file?.[occasion]?.[tone];
      if (!Array.isArray(list) || list.length === 0 || !list.every((l) => typeof l === 'string')) {
        throw new Error(`maa lines/${locale}.json: ${occasion}.${tone} must be a non-empty list of strings`);
      }
      for (const text of list as string[]) {
        const misplaced = placeholdersIn(text).find(
          (p) => isOptional(p) && OPTIONAL_PLACEHOLDERS[p] !== occasion,
        );
        if (misplaced) {
          throw new Error(
            `maa lines/${locale}.json: ${occasion}.${tone}: {${misplaced}} is only known in ${OPTIONAL_PLACEHOLDERS[misplaced as OptionalPlaceholder]}`,
          );
        }
      }
      byTone[tone] = [...new Set(list as string[])].map((text) => ({
        key: lineKey(locale, occasion, tone, text),
        text,
      }));
    }
    out[occasion] = byTone;
  }
  return out;
}

let cached: Library | undefined;
export function library(): Library {
  cached ??= {
    en: toLibraryLocale('en', readLineFile('en')),
    hi: toLibraryLocale('hi', readLineFile('hi')),
  };
  return cached;
}

const PLACEHOLDER = /\{([a-zA-Z]+)\}/g;

/** The placeholder names a line uses. */
export const placeholdersIn = (text: string) => [...text.matchAll(PLACEHOLDER)].map((m) => m[1] ?? '');

/** Whether every placeholder of the line has a value in these facts. */
export const fits = (text: string, facts: Facts) =>
  placeholdersIn(text).every((p) => Object.hasOwn(facts, p) && facts[p as Placeholder] !== undefined);

export function render(text: string, facts: Facts): string {
  return text.replace(PLACEHOLDER, (whole, name: string) => {
    const value = Object.hasOwn(facts, name) ? facts[name as Placeholder] : undefined;
    return value === undefined ? whole : String(value);
  });
}
