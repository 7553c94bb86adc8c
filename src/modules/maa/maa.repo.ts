import type { Queryable } from '../../lib/db.js';
import type { Locale, Occasion, Tone } from './maa.lines.js';

export interface MaaMessageRow {
  id: string;
  userId: string;
  occasion: Occasion;
  tone: Tone;
  locale: Locale;
  lineKey: string;
  text: string;
  source: 'template' | 'llm';
  createdAt: Date;
}

export async function insertMessage(q: Queryable, m: MaaMessageRow): Promise<void> {
  await q.query(
    `INSERT INTO maa_messages (id, user_id, occasion, tone, locale, line_key, text, source, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [m.id, m.userId, m.occasion, m.tone, m.locale, m.lineKey, m.text, m.source, m.createdAt],
  );
}

/** Line keys shown to the user since `since`, each with when it was last shown. */
export async function recentLineKeys(
  q: Queryable,
  userId: string,
  since: Date,
): Promise<Map<string, number>> {
  const { rows } = await q.query<{ lineKey: string; at: Date }>(
    `SELECT line_key, max(created_at) AS at FROM maa_messages
      WHERE user_id = $1 AND created_at >= $2 GROUP BY line_key`,
    [userId, since],
  );
  return new Map(rows.map((r) => [r.lineKey, new Date(r.at).getTime()]));
}

export async function listMessages(
  q: Queryable,
  userId: string,
  limit: number,
  after?: { createdAt: Date; id: string },
): Promise<MaaMessageRow[]> {
  const { rows } = after
    ? await q.query<MaaMessageRow>(
        `SELECT * FROM maa_messages WHERE user_id = $1 AND (created_at, id) < ($2, $3)
          ORDER BY created_at DESC, id DESC LIMIT $4`,
        [userId, after.createdAt, after.id, limit],
      )
    : await q.query<MaaMessageRow>(
        'SELECT * FROM maa_messages WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2',
        [userId, limit],
      );
  return rows;
}

export async function exportMessages(q: Queryable, userId: string) {
  const { rows } = await q.query(
    'SELECT occasion, tone, locale, text, source, created_at FROM maa_messages WHERE user_id = $1 ORDER BY created_at',
    [userId],
  );
  return rows;
}
