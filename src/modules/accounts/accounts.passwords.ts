import { hash, verify } from '@node-rs/argon2';
import { dictionary } from '@zxcvbn-ts/language-common';

// OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane. Algorithm 2 is Algorithm.Argon2id, a const
// enum that isolated modules cannot import.
export const ARGON2 = {
  algorithm: 2,
  memoryCost: 19456,
  timeCost: 2,
  parallelism: 1,
} as const;

// ~49k passwords from public breach corpora, as shipped with zxcvbn. Only those long enough to pass
// the length rule matter; kept lower-cased so "Password123" is caught too.
let common: Set<string> | undefined;
function commonPasswords(): Set<string> {
  common ??= new Set(
    (dictionary.passwords as string[]).filter((p) => p.length >= 8).map((p) => p.toLowerCase()),
  );
  return common;
}

/** NFKC, so the same password typed on two keyboards hashes the same; never truncated. */
export const normalizePassword = (password: string) => password.normalize('NFKC');

export type PasswordProblem = 'password_too_short' | 'password_too_long' | 'password_too_common';

export function passwordProblem(password: string, personal: string[] = []): PasswordProblem | null {
  const length = [...password].length;
  if (length < 8) return 'password_too_short';
  if (length > 128) return 'password_too_long';
  const lower = password.toLowerCase();
  if (commonPasswords().has(lower)) return 'password_too_common';
  if (personal.some((p) => p.length >= 3 && lower === p.toLowerCase())) return 'password_too_common';
  return null;
}

export const hashPassword = (password: string) => hash(normalizePassword(password), ARGON2);

export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  try {
    return await verify(stored, normalizePassword(password));
  } catch {
    return false;
  }
}

/** True when a stored hash was made with other parameters than today's: rehash it on login. */
export function needsRehash(stored: string): boolean {
  const match = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(stored);
  if (!match) return true;
  return (
    Number(match[1]) !== ARGON2.memoryCost ||
    Number(match[2]) !== ARGON2.timeCost ||
    Number(match[3]) !== ARGON2.parallelism
  );
}

// Verified against when the login names nobody, so unknown users cost the same time as wrong passwords.
let dummy: Promise<string> | undefined;
export const dummyHash = () => {
  dummy ??= hashPassword('taskmaa-timing-equaliser-not-a-password');
  return dummy;
};
