// Owns SASLprep (RFC 4013) as PostgreSQL applies it to SCRAM passwords
// (common/saslprep.c): pure ASCII passes unchanged; otherwise map non-ASCII spaces
// to SPACE, drop the "commonly mapped to nothing" characters, NFKC-normalize, and
// if a prohibited character remains use the password as given (PostgreSQL falls
// back to the raw bytes the same way, so both sides still agree).
//
// Approximation: the prohibited and bidirectional checks use JavaScript's Unicode
// property classes (a newer Unicode than stringprep's 3.2), and right-to-left
// characters are recognised by script (Hebrew, Arabic, Syriac, Thaana, N'Ko).
// Only passwords with such characters can differ; ASCII passwords never do.

const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/gu;
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/gu;

// C.2-C.9 and A.1 (unassigned), as property classes and explicit ranges.
const PROHIBITED = new RegExp([
  '[\\p{Cc}\\p{Co}\\p{Cs}\\p{Cn}]', // controls, private use, surrogates, unassigned
  '[\\u0340\\u0341\\u200E\\u200F\\u202A-\\u202E\\u206A-\\u206F]', // C.8 display properties
  '[\\uFFF9-\\uFFFD\\u2FF0-\\u2FFB\\uFDD0-\\uFDEF]', // C.6, C.7, non-characters
  '[\\u{E0001}\\u{E0020}-\\u{E007F}]', // C.9 tagging characters
].join('|'), 'u');

const RAND_AL = /[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}]/u;
const L_CAT = /(?![\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}])\p{L}/u;

/** The password as PostgreSQL's SCRAM code hashes it. */
export function saslprep(password: string): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7F]*$/.test(password)) return password;
  const mapped = password.replace(NON_ASCII_SPACE, ' ').replace(MAPPED_TO_NOTHING, '').normalize('NFKC');
  if (mapped === '') return password;
  if (PROHIBITED.test(mapped)) return password;
  if (RAND_AL.test(mapped)) {
    const chars = [...mapped];
    if (L_CAT.test(mapped) || !RAND_AL.test(chars[0]!) || !RAND_AL.test(chars.at(-1)!)) return password;
  }
  return mapped;
}

/**
 * pg_saslprep on the bytes a client sent: bytes that are not valid UTF-8 are used
 * as they are (PostgreSQL does the same; decoding them would turn different
 * passwords into the same U+FFFD text).
 */
export function saslprepBytes(password: Buffer): Buffer {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(password);
  } catch {
    return password;
  }
  return Buffer.from(saslprep(text), 'utf8');
}
