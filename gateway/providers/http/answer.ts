/**
 * An upstream's answer as the pooled client hands it over: the part of
 * fetch's Response the adapters read (status, headers, body, text()),
 * without building a Response. Headers are made only when someone reads
 * them (an error's Retry-After), and a body read whole is decoded straight
 * from its bytes, without a stream in between.
 */
import type { UpstreamResponse } from "../provider.ts";
import { concatBytes } from "../../streaming/bytes.ts";

const utf8 = new TextDecoder();

export class Answer implements UpstreamResponse {
  readonly status: number;
  readonly statusText: string;
  #fields: [string, string][];
  #headers: Headers | undefined;
  #bytes: Uint8Array<ArrayBuffer> | null;
  #stream: ReadableStream<Uint8Array<ArrayBuffer>> | null;
  #used = false;

  /** `body`: the whole body, a stream of it, or null for none. */
  constructor(
    head: { status: number; statusText: string; headers: [string, string][] },
    body: Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array<ArrayBuffer>> | null,
  ) {
    this.status = head.status;
    this.statusText = head.statusText;
    this.#fields = head.headers;
    this.#bytes = body instanceof Uint8Array ? body : null;
    this.#stream = body instanceof ReadableStream ? body : null;
  }

  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  get headers(): Headers {
    return this.#headers ??= new Headers(this.#fields);
  }

  get body(): ReadableStream<Uint8Array<ArrayBuffer>> | null {
    if (!this.#stream && this.#bytes) {
      const bytes = this.#bytes;
      this.#bytes = null;
      this.#stream = new ReadableStream({
        start(controller) {
          controller.enqueue(bytes);
          controller.close();
        },
      });
    }
    return this.#stream;
  }

  async text(): Promise<string> {
    return utf8.decode(await this.bytes());
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  /** The whole body; a TypeError if it was read already, as with fetch. */
  async bytes(): Promise<Uint8Array<ArrayBuffer>> {
    if (this.#used || this.#stream?.locked) {
      throw new TypeError("The answer's body was read already");
    }
    this.#used = true;
    if (this.#bytes) return this.#bytes;
    if (!this.#stream) return new Uint8Array(0);
    const parts: Uint8Array[] = [];
    for await (const part of this.#stream) parts.push(part);
    return concatBytes(parts);
  }
}
