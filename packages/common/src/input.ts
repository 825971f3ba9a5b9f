/** Reading a one-line value (a key, a token) piped on stdin. */

/** The first non-blank line of a stream, trimmed ('' when there is none). */
export async function readFirstLine(input: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of input) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  return (
    Buffer.concat(chunks)
      .toString('utf8')
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l) ?? ''
  );
}
