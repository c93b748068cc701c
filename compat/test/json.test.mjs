// Pass 1: default JSON codec (sc-formatter) against the JSON listener.
import { defineSuite } from '../lib/suite.mjs';

defineSuite('json');
