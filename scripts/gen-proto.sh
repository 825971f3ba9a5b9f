#!/usr/bin/env bash
# The one generator: protoc (Debian's protobuf-compiler) with ts-proto turns proto/ into typed
# TypeScript for @grpc/grpc-js, with protobufjs at run time. Run by `npm run build`.
#   proto/swarm/*.proto  -> proto/src/gen/           (package @swarmd/proto)
#   proto/raft/raft.proto -> packages/raft-ts/src/pb/ (raft-ts owns its wire messages)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v protoc >/dev/null || { echo "gen-proto: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
plugin="$root/node_modules/.bin/protoc-gen-ts_proto"
[ -x "$plugin" ] || { echo "gen-proto: ts-proto not installed (npm ci)" >&2; exit 1; }
opts="outputServices=grpc-js,esModuleInterop=true,forceLong=number,importSuffix=.js,env=node,useExactTypes=false,outputPartialMethods=true,snakeToCamel=true,oneof=unions,useOptionals=none,exportCommonSymbols=false"
gen() { # out_dir proto_files...
  local out="$1"; shift
  local tmp; tmp="$(mktemp -d)"
  protoc --plugin="protoc-gen-ts_proto=$plugin" --ts_proto_out="$tmp" --ts_proto_opt="$opts" -I proto "$@"
  # protobufjs is CommonJS without an exports map: ESM needs the file extension.
  find "$tmp" -name '*.ts' -exec sed -i 's#from "protobufjs/minimal"#from "protobufjs/minimal.js"#' {} +
  # Only replace the output when it changed, so tsc -b stays incremental.
  if ! diff -rq "$tmp" "$out" >/dev/null 2>&1; then rm -rf "$out"; mkdir -p "$(dirname "$out")"; mv "$tmp" "$out"; else rm -rf "$tmp"; fi
}
gen proto/src/gen proto/swarm/*.proto
gen packages/raft-ts/src/pb proto/raft/raft.proto
