/**
 * Image dimensions read from the file header, before decoding. A few kilobytes of PNG can
 * promise gigapixels (a decompression bomb): the decoders would allocate it all, so the viewer
 * checks the stated size first and refuses what it would not want to decode.
 */
import { HttpError } from './httpError.js';

/** Width and height stated by a PNG's IHDR chunk or a JPEG's start-of-frame marker; undefined when neither is found. */
function statedSize(buf: Buffer): { width: number; height: number } | undefined {
  if (buf.length >= 24 && buf.readUInt32BE(0) === 0x89504e47 && buf.toString('latin1', 12, 16) === 'IHDR')
    return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
  if (buf.length >= 4 && buf[0] === 0xff && buf[1] === 0xd8) {
    let i = 2;
    while (i + 9 < buf.length) {
      if (buf[i] !== 0xff) return undefined;
      const marker = buf[i + 1]!;
      if (marker === 0xff) {
        i++; // fill byte
        continue;
      }
      const length = buf.readUInt16BE(i + 2);
      // SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc)
        return { height: buf.readUInt16BE(i + 5), width: buf.readUInt16BE(i + 7) };
      if (length < 2) return undefined;
      i += 2 + length;
    }
  }
  return undefined;
}

/** Throws a 400 naming the size when the header states more than `maxPixels` pixels. */
export function checkStatedSize(buf: Buffer, maxPixels: number): void {
  const s = statedSize(buf);
  if (s && s.width * s.height > maxPixels)
    throw new HttpError(400, `the image is ${s.width}×${s.height} pixels; at most ${(maxPixels / 1e6).toFixed(0)} megapixels are accepted`);
}
