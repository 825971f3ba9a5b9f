// Imported before a suite (see *-etcd.test.ts): the harness's stores go on an EtcdLog.
import test from 'ava';
import { useEtcdStore } from './store-backend.js';

test.after.always(useEtcdStore());
