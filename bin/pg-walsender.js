#!/usr/bin/env node
// Installed command: runs the TypeScript entry directly (Node >= 24 strips types).
await import('../src/main.ts');
