// Owns the replication command grammar of PostgreSQL 15 (repl_gram.y) and the
// option checks walsender.c applies before executing a command
// (parseCreateReplSlotOptions). Input is the text of a simple Query; output is a
// typed command, SQL (first token not a command keyword) or EMPTY.

import { PgError, SqlState, syntaxError } from './errors.ts';
import { ReplScanner } from './repl-scanner.ts';
import type { Keyword, NoticeSink, Token } from './repl-scanner.ts';

export { KEYWORDS, ReplScanner, tokenize, truncateIdentifier } from './repl-scanner.ts';
export type { Keyword, NoticeSink, Token } from './repl-scanner.ts';

/**
 * A generic option's argument, as the parse-tree node it becomes: string
 * (IDENT or SCONST), number (UCONST, an Integer node: int32), boolean (legacy
 * keyword options), null (no argument).
 */
export type OptionValue = string | number | boolean | null;
export type GenericOption = { name: string; value: OptionValue };
export type PluginOption = { name: string; value: string | null };

export type SnapshotAction = 'export' | 'nothing' | 'use';

export type ReplicationCommand =
  | { kind: 'IDENTIFY_SYSTEM' }
  | { kind: 'SHOW'; name: string }
  | { kind: 'TIMELINE_HISTORY'; timeline: number }
  | { kind: 'READ_REPLICATION_SLOT'; slotName: string }
  | {
      kind: 'CREATE_REPLICATION_SLOT';
      slotName: string;
      temporary: boolean;
      slotKind: 'physical' | 'logical';
      /** output plugin, logical only */
      plugin?: string;
      reserveWal: boolean;
      /** logical only; PG's default is 'export' */
      snapshot?: SnapshotAction;
      /** logical only */
      twoPhase?: boolean;
    }
  | { kind: 'DROP_REPLICATION_SLOT'; slotName: string; wait: boolean }
  | {
      kind: 'START_REPLICATION';
      slotName?: string;
      logical: boolean;
      startPoint: bigint;
      /** physical only; absent when TIMELINE was not given (PG stores 0) */
      timeline?: number;
      /** logical only */
      pluginOptions?: PluginOption[];
    }
  | { kind: 'BASE_BACKUP'; options: GenericOption[] }
  /** Not a replication command: a physical walsender answers ERROR 0A000. */
  | { kind: 'SQL'; text: string }
  /**
   * Nothing but whitespace. PG 15 treats this as SQL too (the first token is not
   * a command keyword), so a physical walsender answers 0A000, not EmptyQueryResponse.
   */
  | { kind: 'EMPTY' };

export type ReplicationCommandKind = ReplicationCommand['kind'];

const COMMAND_KEYWORDS: ReadonlySet<Keyword> = new Set<Keyword>([
  'IDENTIFY_SYSTEM',
  'BASE_BACKUP',
  'START_REPLICATION',
  'CREATE_REPLICATION_SLOT',
  'DROP_REPLICATION_SLOT',
  'READ_REPLICATION_SLOT',
  'TIMELINE_HISTORY',
  'SHOW',
]);

/** Bison's message for every grammar failure (no verbose errors in repl_gram.y). */
const syntax = (): PgError => syntaxError('syntax error');

class Parser {
  private readonly scanner: ReplScanner;
  private ahead: Token | null = null;

  constructor(scanner: ReplScanner, first: Token) {
    this.scanner = scanner;
    this.ahead = first;
  }

  // Tokens are lexed only when the grammar needs them, as bison does, so a
  // syntax error earlier in the text wins over an unterminated quote later on.
  peek(): Token {
    if (this.ahead === null) this.ahead = this.scanner.next();
    return this.ahead;
  }

  advance(): Token {
    const t = this.peek();
    this.ahead = null;
    return t;
  }

  isKeyword(k: Keyword): boolean {
    const t = this.peek();
    return t.type === 'KEYWORD' && t.keyword === k;
  }

  isChar(c: string): boolean {
    const t = this.peek();
    return t.type === 'CHAR' && t.value === c;
  }

  acceptKeyword(k: Keyword): boolean {
    if (!this.isKeyword(k)) return false;
    this.advance();
    return true;
  }

  acceptChar(c: string): boolean {
    if (!this.isChar(c)) return false;
    this.advance();
    return true;
  }

  expectKeyword(k: Keyword): void {
    if (!this.acceptKeyword(k)) throw syntax();
  }

  expectChar(c: string): void {
    if (!this.acceptChar(c)) throw syntax();
  }

  ident(): string {
    const t = this.advance();
    if (t.type !== 'IDENT') throw syntax();
    return t.value;
  }

  /** var_name: IDENT ('.' IDENT)* */
  varName(): string {
    let name = this.ident();
    while (this.acceptChar('.')) name += `.${this.ident()}`;
    return name;
  }

  recptr(): bigint {
    const t = this.advance();
    if (t.type !== 'RECPTR') throw syntax();
    return t.value;
  }

  /** UCONST used as a timeline; the grammar action rejects 0 right away. */
  timeline(): number {
    const t = this.advance();
    if (t.type !== 'UCONST') throw syntax();
    if (t.value === 0) throw syntaxError(`invalid timeline ${t.value}`);
    return t.value;
  }

  /** firstcmd: command opt_semicolon, then end of input */
  end(): void {
    this.acceptChar(';');
    if (this.peek().type !== 'EOF') throw syntax();
  }

  /** generic_option_list: generic_option (',' generic_option)* */
  genericOptions(): GenericOption[] {
    const list = [this.genericOption()];
    while (this.acceptChar(',')) list.push(this.genericOption());
    return list;
  }

  private genericOption(): GenericOption {
    const t = this.advance();
    let name: string;
    if (t.type === 'IDENT') name = t.value;
    else if (t.type === 'KEYWORD' && t.keyword !== 'READ_REPLICATION_SLOT') name = t.keyword.toLowerCase();
    else throw syntax();
    const v = this.peek();
    if (v.type === 'IDENT' || v.type === 'SCONST') {
      this.advance();
      return { name, value: v.value };
    }
    if (v.type === 'UCONST') {
      this.advance();
      return { name, value: v.value | 0 }; // makeInteger() takes an int
    }
    return { name, value: null };
  }
}

// create_slot_legacy_opt -> the DefElem the grammar builds for it
const LEGACY_SLOT_OPTIONS: Partial<Record<Keyword, GenericOption>> = {
  EXPORT_SNAPSHOT: { name: 'snapshot', value: 'export' },
  NOEXPORT_SNAPSHOT: { name: 'snapshot', value: 'nothing' },
  USE_SNAPSHOT: { name: 'snapshot', value: 'use' },
  RESERVE_WAL: { name: 'reserve_wal', value: true },
  TWO_PHASE: { name: 'two_phase', value: true },
};

/** defGetString */
function optionString(o: GenericOption): string {
  if (o.value === null) throw syntaxError(`${o.name} requires a parameter`);
  return String(o.value);
}

/** defGetBoolean: no argument = true; 0/1; true/false/on/off case-insensitively. */
export function optionBoolean(o: GenericOption): boolean {
  if (o.value === null) return true;
  if (typeof o.value === 'number') {
    if (o.value === 0) return false;
    if (o.value === 1) return true;
  } else {
    const s = String(o.value).toLowerCase();
    if (s === 'true' || s === 'on') return true;
    if (s === 'false' || s === 'off') return false;
  }
  throw syntaxError(`${o.name} requires a Boolean value`);
}

function conflicting(): PgError {
  return syntaxError('conflicting or redundant options');
}

/** parseCreateReplSlotOptions (walsender.c), run once the command has parsed. */
function createSlotOptions(
  slotKind: 'physical' | 'logical',
  options: GenericOption[],
): { reserveWal: boolean; snapshot: SnapshotAction; twoPhase: boolean } {
  let reserveWal = false;
  let snapshot: SnapshotAction = 'export';
  let twoPhase = false;
  let snapshotGiven = false;
  let reserveWalGiven = false;
  let twoPhaseGiven = false;
  for (const o of options) {
    if (o.name === 'snapshot') {
      if (snapshotGiven || slotKind !== 'logical') throw conflicting();
      const action = optionString(o);
      snapshotGiven = true;
      if (action === 'export' || action === 'nothing' || action === 'use') snapshot = action;
      else {
        throw new PgError(
          'ERROR',
          SqlState.INVALID_PARAMETER_VALUE,
          `unrecognized value for CREATE_REPLICATION_SLOT option "${o.name}": "${action}"`,
        );
      }
    } else if (o.name === 'reserve_wal') {
      if (reserveWalGiven || slotKind !== 'physical') throw conflicting();
      reserveWalGiven = true;
      reserveWal = optionBoolean(o);
    } else if (o.name === 'two_phase') {
      if (twoPhaseGiven || slotKind !== 'logical') throw conflicting();
      twoPhaseGiven = true;
      twoPhase = optionBoolean(o);
    } else {
      // elog(ERROR): internal-error SQLSTATE
      throw new PgError('ERROR', SqlState.INTERNAL_ERROR, `unrecognized option: ${o.name}`);
    }
  }
  return { reserveWal, snapshot, twoPhase };
}

function createReplicationSlot(p: Parser): ReplicationCommand {
  const slotName = p.ident();
  const temporary = p.acceptKeyword('TEMPORARY');
  let slotKind: 'physical' | 'logical';
  let plugin: string | undefined;
  if (p.acceptKeyword('PHYSICAL')) slotKind = 'physical';
  else if (p.acceptKeyword('LOGICAL')) {
    slotKind = 'logical';
    plugin = p.ident();
  } else throw syntax();

  let options: GenericOption[] = [];
  if (p.acceptChar('(')) {
    options = p.genericOptions();
    p.expectChar(')');
  } else {
    for (;;) {
      const t = p.peek();
      const legacy = t.type === 'KEYWORD' ? LEGACY_SLOT_OPTIONS[t.keyword] : undefined;
      if (legacy === undefined) break;
      p.advance();
      options.push(legacy);
    }
  }
  p.end();

  const o = createSlotOptions(slotKind, options);
  if (slotKind === 'physical') {
    return { kind: 'CREATE_REPLICATION_SLOT', slotName, temporary, slotKind, reserveWal: o.reserveWal };
  }
  return {
    kind: 'CREATE_REPLICATION_SLOT',
    slotName,
    temporary,
    slotKind,
    plugin: plugin!,
    reserveWal: false,
    snapshot: o.snapshot,
    twoPhase: o.twoPhase,
  };
}

function startReplication(p: Parser): ReplicationCommand {
  let slotName: string | undefined;
  if (p.acceptKeyword('SLOT')) {
    slotName = p.ident();
    if (p.acceptKeyword('LOGICAL')) {
      const startPoint = p.recptr();
      const pluginOptions: PluginOption[] = [];
      if (p.acceptChar('(')) {
        do {
          const name = p.ident();
          const v = p.peek();
          if (v.type === 'SCONST') {
            p.advance();
            pluginOptions.push({ name, value: v.value });
          } else pluginOptions.push({ name, value: null });
        } while (p.acceptChar(','));
        p.expectChar(')');
      }
      p.end();
      return { kind: 'START_REPLICATION', slotName, logical: true, startPoint, pluginOptions };
    }
  }
  p.acceptKeyword('PHYSICAL');
  const startPoint = p.recptr();
  const timeline = p.acceptKeyword('TIMELINE') ? p.timeline() : undefined;
  p.end();
  const cmd: ReplicationCommand = { kind: 'START_REPLICATION', logical: false, startPoint };
  if (slotName !== undefined) cmd.slotName = slotName;
  if (timeline !== undefined) cmd.timeline = timeline;
  return cmd;
}

function parseCommand(p: Parser, keyword: Keyword): ReplicationCommand {
  switch (keyword) {
    case 'IDENTIFY_SYSTEM':
      p.end();
      return { kind: 'IDENTIFY_SYSTEM' };
    case 'SHOW': {
      const name = p.varName();
      p.end();
      return { kind: 'SHOW', name };
    }
    case 'TIMELINE_HISTORY': {
      const timeline = p.timeline();
      p.end();
      return { kind: 'TIMELINE_HISTORY', timeline };
    }
    case 'READ_REPLICATION_SLOT': {
      const slotName = p.varName();
      p.end();
      return { kind: 'READ_REPLICATION_SLOT', slotName };
    }
    case 'CREATE_REPLICATION_SLOT':
      return createReplicationSlot(p);
    case 'DROP_REPLICATION_SLOT': {
      const slotName = p.ident();
      const wait = p.acceptKeyword('WAIT');
      p.end();
      return { kind: 'DROP_REPLICATION_SLOT', slotName, wait };
    }
    case 'START_REPLICATION':
      return startReplication(p);
    case 'BASE_BACKUP': {
      let options: GenericOption[] = [];
      if (p.acceptChar('(')) {
        options = p.genericOptions();
        p.expectChar(')');
      }
      p.end();
      return { kind: 'BASE_BACKUP', options };
    }
    default:
      throw syntax();
  }
}

/**
 * Parses one simple-Query text as exec_replication_command would. Throws
 * PgError (ERROR, 42601 for grammar failures; option errors as walsender.c
 * raises them). Identifiers longer than 63 bytes are truncated with a NOTICE
 * passed to `onNotice`.
 */
export function parseReplicationCommand(text: string, onNotice?: NoticeSink): ReplicationCommand {
  const scanner = new ReplScanner(text, onNotice);
  // replication_scanner_is_replication_command: only the first token decides,
  // and lexing it can already fail (an unterminated quote is an error even for SQL).
  const first = scanner.next();
  if (first.type === 'EOF') return { kind: 'EMPTY' };
  if (first.type !== 'KEYWORD' || !COMMAND_KEYWORDS.has(first.keyword)) return { kind: 'SQL', text };
  const p = new Parser(scanner, first);
  p.advance();
  return parseCommand(p, first.keyword);
}
