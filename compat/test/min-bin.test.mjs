// Pass 2: sc-codec-min-bin (MessagePack) against the --min-bin-port listener
// of a single frontend (of a cluster with COMPAT_CLUSTER=1).
import { defineSuite } from '../lib/suite.mjs';

defineSuite('min-bin');
