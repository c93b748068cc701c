// Pass 1: default JSON codec (sc-formatter) against the JSON listener of a
// single frontend (of a cluster with COMPAT_CLUSTER=1).
import { defineSuite } from '../lib/suite.mjs';

defineSuite('json');
