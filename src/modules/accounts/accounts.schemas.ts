import { type Static, Type as T } from '@sinclair/typebox';

const strict = { additionalProperties: false } as const;

export const Username = T.String({
  minLength: 3,
  maxLength: 30,
  pattern: '^[A-Za-z0-9_.]+$',
  description: '3–30 of letters, digits, `_` and `.`; unique ignoring case.',
});
export const Email = T.String({ maxLength: 254, format: 'email' });
// Length is checked again in code points after NFKC; the schema bound keeps abuse out of argon2.
export const Password = T.String({
  minLength: 8,
  maxLength: 512,
  description: '8–128 characters; common passwords are refused.',
});
export const TimeZone = T.String({
  minLength: 1,
  maxLength: 64,
  description: 'IANA time zone, e.g. Asia/Kolkata.',
});
const Hhmm = T.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$' });
export const QuietHours = T.Union([T.Object({ start: Hhmm, end: Hhmm }, strict), T.Null()], {
  description:
    'Local times between which Maa does not speak up unprompted (a window ending before it starts wraps midnight); null for the default 22:00–07:00; equal start and end for none.',
});

export const Me = T.Object(
  {
    id: T.String({ format: 'uuid' }),
    username: T.String(),
    email: T.String(),
    emailVerified: T.Boolean(),
    name: T.String(),
    about: T.String(),
    avatarUrl: T.Union([T.String(), T.Null()]),
    timezone: T.String(),
    dayStartHour: T.Integer(),
    dailyGoal: T.Integer(),
    profileVisibility: T.Union([T.Literal('public'), T.Literal('friends'), T.Literal('private')]),
    discoverable: T.Boolean(),
    maaTone: T.Union([T.Literal('gentle'), T.Literal('balanced'), T.Literal('strict')]),
    locale: T.Union([T.Literal('en'), T.Literal('hi')]),
    quietHours: QuietHours,
    createdAt: T.String({ format: 'date-time' }),
  },
  { ...strict, $id: 'Me' },
);
export type Me = Static<typeof Me>;

export const RegisterBody = T.Object(
  {
    username: Username,
    email: Email,
    password: Password,
    name: T.Optional(T.String({ maxLength: 60 })),
    timezone: T.Optional(TimeZone),
  },
  strict,
);

export const TokenBody = T.Object({ token: T.String({ minLength: 10, maxLength: 200 }) }, strict);
export const EmailBody = T.Object({ email: Email }, strict);

export const LoginBody = T.Object(
  {
    login: T.String({ minLength: 1, maxLength: 254, description: 'Email or username.' }),
    password: T.String({ minLength: 1, maxLength: 512 }),
  },
  strict,
);
export const RefreshBody = T.Object(
  {
    refreshToken: T.Optional(
      T.String({ minLength: 10, maxLength: 200, description: 'Omit to use the refresh cookie.' }),
    ),
  },
  strict,
);

export const AuthResult = T.Object(
  {
    accessToken: T.String(),
    expiresIn: T.Integer({ description: 'Seconds until the access token expires.' }),
    refreshToken: T.String(),
    user: Me,
  },
  strict,
);
export type AuthResult = Static<typeof AuthResult>;

export const Session = T.Object(
  {
    id: T.String({ format: 'uuid' }),
    current: T.Boolean(),
    createdAt: T.String({ format: 'date-time' }),
    lastUsedAt: T.String({ format: 'date-time' }),
    userAgent: T.String(),
  },
  strict,
);
export const SessionList = T.Object({ items: T.Array(Session), nextCursor: T.Null() }, strict);
export const SessionParams = T.Object({ id: T.String({ format: 'uuid' }) }, strict);

export const ResetBody = T.Object(
  { token: T.String({ minLength: 10, maxLength: 200 }), password: Password },
  strict,
);
export const ChangePasswordBody = T.Object(
  { currentPassword: T.String({ minLength: 1, maxLength: 512 }), password: Password },
  strict,
);

export const UpdateMeBody = T.Object(
  {
    name: T.Optional(T.String({ maxLength: 60 })),
    about: T.Optional(T.String({ maxLength: 500 })),
    timezone: T.Optional(TimeZone),
    dayStartHour: T.Optional(T.Integer({ minimum: 0, maximum: 23 })),
    dailyGoal: T.Optional(T.Integer({ minimum: 1, maximum: 50 })),
    profileVisibility: T.Optional(T.Union([T.Literal('public'), T.Literal('friends'), T.Literal('private')])),
    discoverable: T.Optional(T.Boolean()),
    maaTone: T.Optional(T.Union([T.Literal('gentle'), T.Literal('balanced'), T.Literal('strict')])),
    locale: T.Optional(T.Union([T.Literal('en'), T.Literal('hi')])),
    quietHours: T.Optional(QuietHours),
  },
  { ...strict, minProperties: 1 },
);
export type UpdateMe = Static<typeof UpdateMeBody>;

export const Accepted = T.Object({ status: T.Literal('accepted') }, strict);
