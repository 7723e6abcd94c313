/**
 * PNG versions of the SVG pictures, rasterised by resvg (a Rust SVG renderer shipped as prebuilt
 * npm binaries), so the PNG is the same drawing as the SVG rather than a second hand-drawn copy.
 */
import { Resvg } from '@resvg/resvg-js';

/** PNGs are drawn at twice the SVG's pixel size, so they stay sharp on high-density screens. */
export const PNG_ZOOM = 2;

export function svgToPng(svg: string, zoom = PNG_ZOOM): Buffer {
  const r = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: zoom },
    background: '#ffffff',
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
  });
  return r.render().asPng();
}
