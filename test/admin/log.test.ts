// Logging: the readable form used on a terminal, and worker loggers following the
// level the main thread publishes in the control block (how a reload reaches them).

import t from 'tap';
import { createLogger, followLogLevel, readable } from '../../src/log.ts';
import { setLogLevel } from '../../src/shmem/control.ts';
import { createSharedMemory } from '../../src/shmem/layout.ts';

t.test('readable lines', async (t) => {
  const line = JSON.stringify({ level: 30, time: Date.UTC(2026, 0, 2, 3, 4, 5, 678), pid: 1, hostname: 'h', msg: 'start streaming',
    connId: 3, applicationName: 'standby1', startPoint: '0/3000000' });
  t.equal(readable(line), '03:04:05.678 INFO  start streaming connId=3 applicationName=standby1 startPoint=0/3000000\n');
  const err = readable(JSON.stringify({ level: 50, time: 0, msg: 'failed', err: { stack: 'Error: boom\n    at x' } }));
  t.match(err, /^00:00:00\.000 ERROR failed\n {4}Error: boom/);
  t.equal(readable('not json\n'), 'not json\n', 'anything else passes through');
});

t.test('a worker logger follows the published level', async (t) => {
  const views = createSharedMemory(1);
  const log = createLogger('info');
  followLogLevel(log, views);
  t.equal(log.level, 'info', 'nothing published yet: its own level');
  setLogLevel(views, 'debug');
  await new Promise((r) => setTimeout(r, 700));
  t.equal(log.level, 'debug');
  setLogLevel(views, 'warn');
  await new Promise((r) => setTimeout(r, 700));
  t.equal(log.level, 'warn');
});
