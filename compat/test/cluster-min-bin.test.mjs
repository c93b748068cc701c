// Pass 4: sc-codec-min-bin against a cluster (state server, 2 brokers,
// 2 frontends); the two clients of a test sit on different frontends.
import { defineSuite } from '../lib/suite.mjs';

defineSuite('min-bin', { cluster: true });
