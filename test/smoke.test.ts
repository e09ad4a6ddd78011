import t from 'tap';
const x: number = 1;
t.equal(x, 1, 'type stripping works');
t.equal(process.versions.node.split('.')[0], '24', 'runs on node 24');
