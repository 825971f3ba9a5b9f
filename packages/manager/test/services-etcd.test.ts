// services.test.ts again, with the harness's store on an EtcdLog over a real etcd (Debian's
// etcd-server): everything above the store runs unchanged on the etcd backend.
import './helpers/on-etcd.js';
import './services.test.js';
