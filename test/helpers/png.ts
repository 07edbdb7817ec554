import assert from 'node:assert/strict';
import { inflateSync } from 'node:zlib';

export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface DecodedPng {
  width: number;
  height: number;
  /** Bytes per pixel: 3 (RGB) or 4 (RGBA). */
  channels: number;
  pixels: Buffer;
}

/**
 * Decodes an 8-bit, non-interlaced RGB or RGBA PNG (what resvg writes), undoing the scanline
 * filters, so a test can look at the pixels: whether the text was drawn, not just whether a file was.
 */
export function decodePng(png: Buffer): DecodedPng {
  assert.deepEqual(png.subarray(0, 8), PNG_SIGNATURE, 'the PNG signature');
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  for (let at = 8; at < png.length;) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      assert.equal(data[8], 8, 'bit depth 8');
      assert.ok(data[9] === 2 || data[9] === 6, `colour type ${data[9]} is RGB or RGBA`);
      assert.equal(data[12], 0, 'not interlaced');
      channels = data[9] === 6 ? 4 : 3;
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    at += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  assert.equal(raw.length, (stride + 1) * height, 'one filter byte and one row of pixels per scanline');
  const out = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const row = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? out[y * stride + i - channels]! : 0;
      const b = y > 0 ? out[(y - 1) * stride + i]! : 0;
      const c = y > 0 && i >= channels ? out[(y - 1) * stride + i - channels]! : 0;
      let predictor: number;
      switch (filter) {
        case 0:
          predictor = 0;
          break;
        case 1:
          predictor = a;
          break;
        case 2:
          predictor = b;
          break;
        case 3:
          predictor = (a + b) >> 1;
          break;
        case 4: {
          const p = a + b - c;
          const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
          predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default:
          assert.fail(`scanline ${y}: filter type ${filter}`);
      }
      out[y * stride + i] = (row[i]! + predictor) & 0xff;
    }
  }
  return { width, height, channels, pixels: out };
}

/** How many pixels in rows [y0, y1) are dark (opaque, every channel below 100): ink, such as text. */
export function darkPixels(img: DecodedPng, y0: number, y1: number): number {
  let n = 0;
  for (let y = y0; y < Math.min(y1, img.height); y++)
    for (let x = 0; x < img.width; x++) {
      const i = (y * img.width + x) * img.channels;
      const p = img.pixels;
      if (p[i]! < 100 && p[i + 1]! < 100 && p[i + 2]! < 100 && (img.channels === 3 || p[i + 3]! > 200)) n++;
    }
  return n;
}
