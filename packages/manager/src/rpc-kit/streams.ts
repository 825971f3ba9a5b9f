/** Server-streaming handlers: one place that ends a call once, on error, cancel or upstream end. */
import type * as grpc from '@grpc/grpc-js';
import { streamError } from './replies.js';

export interface StreamSink<Res> {
  write(v: Res): void;
  /** What stops the stream's source (a watch, a subscription, an upstream call). */
  onClose(fn: () => void): void;
  /** Ends the call (with an error as a gRPC status); later calls do nothing. */
  end(err?: unknown): void;
  ended(): boolean;
  /** Relays an upstream stream (a call forwarded to the leader) until it ends. */
  relay(up: grpc.ClientReadableStream<Res>): void;
}

/** Runs `run` for a server-streaming call; a rejection ends the call with that error. */
export function serveStream<Req, Res>(call: grpc.ServerWritableStream<Req, Res>, run: (s: StreamSink<Res>) => Promise<void>): void {
  let close = (): void => undefined;
  let done = false;
  const sink: StreamSink<Res> = {
    write: (v) => {
      if (!done) call.write(v);
    },
    onClose: (fn) => {
      close = fn;
    },
    end: (err) => {
      if (done) return;
      done = true;
      close();
      if (err === undefined) call.end();
      else call.emit('error', streamError(err));
    },
    ended: () => done,
    relay: (up) => {
      sink.onClose(() => up.cancel());
      up.on('data', (v: Res) => sink.write(v));
      up.on('error', (err) => sink.end(err));
      up.on('end', () => sink.end());
    },
  };
  call.on('cancelled', () => sink.end());
  run(sink).then(
    () => undefined,
    (err: unknown) => sink.end(err),
  );
}
