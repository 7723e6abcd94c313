/**
 * The charts, drawn by ECharts (only the chart types the viewer uses are bundled). SVG rendering:
 * crisp at any zoom, and its text is real text a test or a screen reader can find.
 */
import * as echarts from 'echarts/core';
import { BarChart, HeatmapChart, LineChart } from 'echarts/charts';
import { GridComponent, LegendComponent, TitleComponent, TooltipComponent, VisualMapComponent } from 'echarts/components';
import { SVGRenderer } from 'echarts/renderers';
import type { EChartsCoreOption } from 'echarts/core';

echarts.use([BarChart, HeatmapChart, LineChart, GridComponent, LegendComponent, TitleComponent, TooltipComponent, VisualMapComponent, SVGRenderer]);

/** Viridis: perceptually uniform and readable by colour-blind readers (as the static report). */
export const VIRIDIS = ['#440154', '#3b528b', '#21918c', '#5ec962', '#fde725'];
/** Tableau 10, for tasks and templates. */
export const CATEGORICAL = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
export const HARD_OUTLINE = '#e15759';

const live = new Set<echarts.ECharts>();
window.addEventListener('resize', () => live.forEach((c) => c.resize()));

/** Draws `option` into `el` (replacing what was there); `el` must be visible so it has a size. */
export function draw(el: HTMLElement, option: EChartsCoreOption): echarts.ECharts {
  const existing = echarts.getInstanceByDom(el);
  const c = existing ?? echarts.init(el, undefined, { renderer: 'svg' });
  live.add(c);
  c.setOption(option, { notMerge: true });
  return c;
}

export const templateName = (b: number) => `T${b + 1}`;

export interface HeatmapSpec {
  /** `values[row][col]` in [0, 1]. */
  values: number[][];
  rowLabels: string[];
  colLabels: string[];
  /** Per row, the column to outline (the hard readout). */
  outline?: number[];
  xName?: string;
  digits?: number;
}

/** A matrix as a heat map with its numbers written in the cells. */
export function heatmapOption(s: HeatmapSpec): EChartsCoreOption {
  const data = s.values.flatMap((row, r) =>
    row.map((v, c) => ({
      value: [c, r, v],
      label: { color: v > 0.6 ? '#111' : '#fff' },
      ...(s.outline?.[r] === c ? { itemStyle: { borderColor: HARD_OUTLINE, borderWidth: 3 } } : {}),
    })),
  );
  return {
    animation: false,
    tooltip: { formatter: (p: { value: number[] }) => `${s.rowLabels[p.value[1]!]} · ${s.colLabels[p.value[0]!]}: ${p.value[2]!.toFixed(3)}` },
    grid: { left: 110, right: 16, top: 46, bottom: 8 },
    xAxis: { type: 'category', data: s.colLabels, position: 'top', name: s.xName, nameLocation: 'middle', nameGap: 26, splitArea: { show: true } },
    yAxis: { type: 'category', data: s.rowLabels, inverse: true, splitArea: { show: true } },
    visualMap: { min: 0, max: 1, show: false, inRange: { color: VIRIDIS } },
    series: [{ type: 'heatmap', data, label: { show: true, formatter: (p: { value: number[] }) => p.value[2]!.toFixed(s.digits ?? 2) } }],
  };
}

/** Height in pixels for a heat map of `rows` rows. */
export const heatmapHeight = (rows: number) => 60 + 34 * rows;
