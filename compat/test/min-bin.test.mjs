// Pass 2: sc-codec-min-bin (MessagePack) against the --min-bin-port listener.
import { defineSuite } from '../lib/suite.mjs';

defineSuite('min-bin');
