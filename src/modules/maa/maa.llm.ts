import type { Facts, Locale, Occasion, Tone } from './maa.lines.js';

// Optional: Maa's words from any OpenAI-compatible chat completions endpoint. Every failure (timeout,
// HTTP error, bad JSON, empty or unusable text) returns null, and the caller uses the template line.

export const LLM_TIMEOUT_MS = 2000;
export const LLM_MAX_CHARS = 280;

export interface LlmOptions {
  url: string;
  model: string;
  apiKey?: string | undefined;
  timeoutMs?: number;
}

export interface LlmAsk {
  occasion: Occasion;
  tone: Tone;
  locale: Locale;
  facts: Facts;
  /** The template line for this moment, as an example of voice and length. */
  example: string;
}

const TONE_WORDS: Record<Tone, string> = {
  gentle: 'very gentle, soft and reassuring',
  balanced: 'warm and encouraging with a light push',
  strict: 'firm and no-nonsense but still loving and kind',
};

export function systemPrompt(a: LlmAsk): string {
  const f = a.facts;
  return [
    'You are Maa, the loving Indian mother inside the TaskMaa app. You call the user "beta".',
    'You care about discipline but you are never shaming, insulting or guilt-tripping; after missed days you grow kinder, not harsher.',
    `Tone: ${TONE_WORDS[a.tone]}.`,
    a.locale === 'hi'
      ? 'Language: Hinglish (Hindi written in Latin script, mixed with simple English).'
      : 'Language: simple English with the occasional Hindi word like "beta" or "shabash".',
    `Occasion: ${a.occasion.replace(/_/g, ' ')}.`,
    `Facts (use only these numbers): name ${f.name}; streak ${f.streak} days; done today ${f.done} of goal ${f.goal}; tasks left ${f.tasksLeft}; hours left today ${f.hoursLeft}; days missed ${f.days}${f.rank === undefined ? '' : `; finished number ${f.rank} in the group task`}.`,
    'Reply with one or two short sentences, at most 200 characters, plain text only: no links, no markdown, no emoji lists, no quotes.',
    `Example of the voice: ${a.example}`,
  ].join('\n');
}

/** Plain, short, link-free text, or null when nothing usable is left. */
export function sanitise(raw: string): string | null {
  let t = raw
    .replace(/<[^>]*>/g, ' ')
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/\b(?:https?:\/\/|www\.)\S+/gi, ' ')
    .replace(/\b[\w.-]+\.(?:com|net|org|in|io|ai|app|co)(?:\/\S*)?\b/gi, ' ')
    .replace(/```[\s\S]*?```/g, ' ')
    .replace(/[*_`#>~|]+/g, '')
    .replace(/^\s*[-+]\s+/gm, '')
    .replace(/[{}]/g, '')
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is stripped
    .replace(/[\u0000-\u001f\u007f]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/^["'“”]+|["'“”]+$/g, '')
    .trim();
  if (t.length > LLM_MAX_CHARS) {
    const cut = t.slice(0, LLM_MAX_CHARS - 1);
    const lastStop = Math.max(cut.lastIndexOf('. '), cut.lastIndexOf('! '), cut.lastIndexOf('? '));
    t = lastStop > 40 ? cut.slice(0, lastStop + 1) : `${cut.replace(/\s+\S*$/, '')}…`;
  }
  return t.length >= 2 ? t : null;
}

export async function askLlm(opts: LlmOptions, ask: LlmAsk): Promise<string | null> {
  const url = `${opts.url.replace(/\/+$/, '')}/chat/completions`;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}),
      },
      body: JSON.stringify({
        model: opts.model,
        max_tokens: 120,
        temperature: 0.8,
        messages: [
          { role: 'system', content: systemPrompt(ask) },
          { role: 'user', content: `Say something to ${ask.facts.name} now.` },
        ],
      }),
      signal: AbortSignal.timeout(opts.timeoutMs ?? LLM_TIMEOUT_MS),
    });
    if (!res.ok) {
      await res.body?.cancel().catch(() => {});
      return null;
    }
    // The body is read under the same signal, so a slow body also times out.
    const json = (await res.json()) as { choices?: { message?: { content?: unknown } }[] };
    const content = json?.choices?.[0]?.message?.content;
    return typeof content === 'string' ? sanitise(content) : null;
  } catch {
    return null;
  }
}
