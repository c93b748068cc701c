// Pass 3: default JSON codec against a cluster (state server, 2 brokers,
// 2 frontends); the two clients of a test sit on different frontends.
import { defineSuite } from '../lib/suite.mjs';

defineSuite('json', { cluster: true });
