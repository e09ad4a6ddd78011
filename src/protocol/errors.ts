// Owns the error vocabulary of the wire protocol: SQLSTATE codes, severities and
// PgError, the one exception type every codec function throws on bad input. A
// PgError carries exactly what an ErrorResponse needs, so the connection code can
// turn any failure into the bytes PostgreSQL would have sent.

/** SQLSTATE codes used by the walsender (errcodes.txt names, upper-cased). */
export const SqlState = {
  SUCCESSFUL_COMPLETION: '00000',
  CONNECTION_FAILURE: '08006',
  CONNECTION_DOES_NOT_EXIST: '08003',
  PROTOCOL_VIOLATION: '08P01',
  FEATURE_NOT_SUPPORTED: '0A000',
  INVALID_PARAMETER_VALUE: '22023',
  IN_FAILED_SQL_TRANSACTION: '25P02',
  INVALID_AUTHORIZATION_SPECIFICATION: '28000',
  INVALID_PASSWORD: '28P01',
  INSUFFICIENT_PRIVILEGE: '42501',
  SYNTAX_ERROR: '42601',
  INVALID_NAME: '42602',
  NAME_TOO_LONG: '42622',
  UNDEFINED_OBJECT: '42704',
  DUPLICATE_OBJECT: '42710',
  TOO_MANY_CONNECTIONS: '53300',
  CONFIGURATION_LIMIT_EXCEEDED: '53400',
  PROGRAM_LIMIT_EXCEEDED: '54000',
  OBJECT_NOT_IN_PREREQUISITE_STATE: '55000',
  OBJECT_IN_USE: '55006',
  QUERY_CANCELED: '57014',
  ADMIN_SHUTDOWN: '57P01',
  CANNOT_CONNECT_NOW: '57P03',
  UNDEFINED_FILE: '58P01',
  INTERNAL_ERROR: 'XX000',
} as const;

export type SqlStateCode = (typeof SqlState)[keyof typeof SqlState];

/** Non-localized severities as they appear in the 'V' field. */
export type Severity = 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'LOG' | 'INFO' | 'DEBUG';

export type PgErrorExtra = {
  detail?: string;
  hint?: string;
  /**
   * PostgreSQL reports some protocol failures as COMMERROR: written to the server
   * log only, never sent, because the client is presumed unable to parse a reply
   * (lost framing, garbage startup packet). The connection is closed afterwards.
   */
  logOnly?: boolean;
};

export class PgError extends Error {
  severity: Severity;
  code: string;
  detail?: string;
  hint?: string;
  logOnly: boolean;

  constructor(severity: Severity, code: string, message: string, extra?: PgErrorExtra) {
    super(message);
    this.name = 'PgError';
    this.severity = severity;
    this.code = code;
    if (extra?.detail !== undefined) this.detail = extra.detail;
    if (extra?.hint !== undefined) this.hint = extra.hint;
    this.logOnly = extra?.logOnly ?? false;
  }
}

/** Connection-ending protocol violation (08P01). */
export function fatalProtocol(message: string, extra?: PgErrorExtra): PgError {
  return new PgError('FATAL', SqlState.PROTOCOL_VIOLATION, message, extra);
}

/** Statement-level protocol violation (08P01): the session survives it. */
export function errorProtocol(message: string): PgError {
  return new PgError('ERROR', SqlState.PROTOCOL_VIOLATION, message);
}

/** ERROR 42601, the code of every replication-grammar failure. */
export function syntaxError(message: string): PgError {
  return new PgError('ERROR', SqlState.SYNTAX_ERROR, message);
}
