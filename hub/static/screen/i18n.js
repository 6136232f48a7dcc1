// Labels in English and Chinese. Static text carries data-i18n="key"; panels call t() when they draw.
// The choice is kept per browser (localStorage), so a wall screen stays in the language it was set to.

const EN = {
  title: "City operations", subtitle: "Situation picture",
  devices: "devices", online: "online", offline: "offline", unknown: "never seen", alerting: "alerting",
  alerts: "Alerts", districts: "Districts", device: "Device", map: "Map",
  "sort.severity": "most severe", "sort.newest": "newest", "sort.state": "state", "sort.area": "area",
  sort: "sort", "level.blue": "blue", "level.yellow": "yellow", "level.orange": "orange", "level.red": "red",
  "level.info": "info",
  "state.raised": "raised", "state.acknowledged": "acknowledged", "state.dispatched": "dispatched",
  "state.resolved": "resolved", "state.closed": "closed",
  "action.acknowledge": "acknowledge", "action.dispatch": "dispatch", "action.resolve": "resolve",
  "action.close": "close", "action.reopen": "reopen",
  "cond.firing": "firing", "cond.cleared": "cleared",
  noAlerts: "No active alerts", by: "by", ago: "ago", now: "now", unit: "unit", note: "note",
  send: "send", cancel: "cancel", dispatchTo: "Dispatch a unit", unitPlaceholder: "e.g. drainage team 3",
  lang: "中文", sound: "sound", soundOn: "sound on", soundOff: "sound off", soundBlocked: "click to enable sound",
  logout: "log out", login: "Log in", user: "user", password: "password", list: "device list",
  "live.feed": "live", "live.polling": "polling", "live.connecting": "connecting", "live.down": "offline",
  redAlert: "RED ALERT", dismiss: "dismiss", trend24: "alerts raised per hour, last 24 h", trendHead: "24 h", onlineShare: "online",
  lastSeen: "last seen", never: "never", values: "Latest values", chart24: "Last 24 h",
  noData: "no readings in the last 24 h", close: "close", area: "area", vendor: "vendor", type: "type",
  deviceAlerts: "Active alerts", pickDevice: "Click a marker to see a device",
  fit: "whole city", staffOnly: "The command screen is for the city's staff. Vendors: see your devices in the",
  camera: "camera", cameras: "cameras", findings: "findings", total: "total",
  "cam.ok": "ok", "cam.fault": "fault", "cam.offline": "signal lost", "cam.unknown": "not checked",
  "cam.lost": "signal lost", "cam.disabled": "not patrolled",
  cameraPanel: "Camera", pickCamera: "Click a camera (a square on the map) to see its picture",
  checkNow: "check now", checking: "checking…", loading: "loading…",
  picture: "picture", noPicture: "no picture yet", resolution: "resolution", frameRate: "frame rate",
  codec: "codec", firstFrame: "time to first frame", lastCheck: "last check", stateSince: "in this state since",
  "findings.confirmed": "Confirmed findings", "findings.seen": "Seen in the last check only",
  noFindings: "none", scoreHelp: "score: 0.5 at the threshold, 1.0 at the measure's limit",
  "finding.signal_lost": "signal lost", "finding.frozen": "frozen picture", "finding.black": "black picture",
  "finding.overexposed": "overexposed", "finding.blurred": "blurred", "finding.covered": "covered lens",
  "finding.colour_cast": "colour cast", "finding.noise": "noisy picture",
  nearCameras: "Nearest working cameras", noNearCameras: "No working camera within 1 km",
  noPlace: "This alert has no known place", camerasFailed: "Cameras could not be read", metres: "m",
  actionFailed: "The hub refused", zoomIn: "zoom in", zoomOut: "zoom out", hub: "hub",
  "type.water_level": "water level", "type.rain_gauge": "rain gauge", "type.pipe_pressure": "pipe pressure",
  "type.water_quality": "water quality", "type.traffic_flow": "traffic detector", "type.gateway": "gateway",
  "type.manhole_cover": "manhole cover", "type.smoke_detector": "smoke detector",
  "type.combustible_gas": "gas detector", "type.bin_fill": "waste bin", "type.noise": "noise monitor",
  "type.streetlight": "streetlight", "type.structure_movement": "structure movement",
  // the emergency response (response.js, responsemap.js)
  incidents: "Incidents", incident: "incident", noIncidents: "No open incidents", unitsHead: "Units",
  awaiting: "awaiting", overdue: "overdue", left: "left", noLimit: "no time limit", escalated: "handed up",
  warning: "warning", until: "until",
  "istate.reported": "reported", "istate.registered": "registered", "istate.dispatched": "dispatched",
  "istate.in_progress": "in progress", "istate.verified": "verified", "istate.closed": "closed",
  "step.register": "registration", "step.dispatch": "dispatch", "step.arrive": "arrival on site",
  "step.handle": "handling and check", "step.close": "closing",
  "ustatus.available": "available", "ustatus.dispatched": "on the way", "ustatus.on_scene": "on scene",
  "ustatus.off_duty": "off duty",
  "ukind.drainage": "drainage crew", "ukind.traffic_police": "traffic police", "ukind.fire": "fire rescue",
  "ukind.municipal_works": "municipal works", "ukind.medical": "medical", "ukind.other": "unit",
  "ukindShort.drainage": "D", "ukindShort.traffic_police": "T", "ukindShort.fire": "F",
  "ukindShort.municipal_works": "W", "ukindShort.medical": "M", "ukindShort.other": "U",
  "itype.waterlogging": "waterlogging", "itype.road_hazard": "road hazard", "itype.fire": "fire",
  "itype.gas_leak": "gas leak", "itype.structure": "structure", "itype.water_supply": "water supply",
  "itype.traffic": "traffic", "itype.sanitation": "sanitation", "itype.equipment": "equipment", "itype.other": "other",
  "wkind.rainstorm": "rainstorm", "wkind.flood": "flood", "wkind.waterlogging": "waterlogging",
  "wkind.typhoon": "typhoon", "wkind.heat": "heat", "wkind.cold": "cold wave", "wkind.fog": "fog",
  "wkind.gale": "gale", "wkind.other": "",
};

const ZH = {
  title: "城市运行监测", subtitle: "态势一张图",
  devices: "设备", online: "在线", offline: "离线", unknown: "未上报", alerting: "告警中",
  alerts: "告警", districts: "辖区", device: "设备", map: "地图",
  "sort.severity": "按级别", "sort.newest": "按时间", "sort.state": "按状态", "sort.area": "按区域",
  sort: "排序", "level.blue": "蓝色", "level.yellow": "黄色", "level.orange": "橙色", "level.red": "红色",
  "level.info": "提示",
  "state.raised": "待处理", "state.acknowledged": "已确认", "state.dispatched": "已派遣",
  "state.resolved": "已处置", "state.closed": "已结案",
  "action.acknowledge": "确认", "action.dispatch": "派遣", "action.resolve": "处置完成",
  "action.close": "结案", "action.reopen": "重新打开",
  "cond.firing": "持续中", "cond.cleared": "已恢复",
  noAlerts: "暂无告警", by: "操作人", ago: "前", now: "刚刚", unit: "处置单位", note: "备注",
  send: "派遣", cancel: "取消", dispatchTo: "派遣处置单位", unitPlaceholder: "如：排水三队",
  lang: "EN", sound: "声音", soundOn: "声音开", soundOff: "声音关", soundBlocked: "点击启用声音",
  logout: "退出", login: "登录", user: "用户名", password: "密码", list: "设备列表",
  "live.feed": "实时", "live.polling": "轮询", "live.connecting": "连接中", "live.down": "断开",
  redAlert: "红色告警", dismiss: "知道了", trend24: "最近24小时每小时新增告警", trendHead: "24小时", onlineShare: "在线率",
  lastSeen: "最近上报", never: "从未", values: "最新数值", chart24: "最近24小时",
  noData: "最近24小时无数据", close: "关闭", area: "区域", vendor: "厂商", type: "类型",
  deviceAlerts: "当前告警", pickDevice: "点击地图上的设备查看详情",
  fit: "全市", staffOnly: "指挥大屏仅供城市工作人员使用。厂商请查看",
  camera: "摄像头", cameras: "摄像头", findings: "诊断", total: "合计",
  "cam.ok": "正常", "cam.fault": "故障", "cam.offline": "信号丢失", "cam.unknown": "未检测",
  "cam.lost": "信号丢失", "cam.disabled": "未巡检",
  cameraPanel: "摄像头", pickCamera: "点击地图上的摄像头（方块）查看画面",
  checkNow: "立即检测", checking: "检测中…", loading: "加载中…",
  picture: "画面", noPicture: "暂无画面", resolution: "分辨率", frameRate: "帧率",
  codec: "编码", firstFrame: "首帧时间", lastCheck: "最近检测", stateSince: "本状态始于",
  "findings.confirmed": "已确认的故障", "findings.seen": "仅最近一次检测发现",
  noFindings: "无", scoreHelp: "评分：达到阈值为0.5，达到测量极限为1.0",
  "finding.signal_lost": "信号丢失", "finding.frozen": "画面冻结", "finding.black": "黑屏",
  "finding.overexposed": "过曝", "finding.blurred": "模糊", "finding.covered": "镜头遮挡",
  "finding.colour_cast": "偏色", "finding.noise": "噪点",
  nearCameras: "附近可用摄像头", noNearCameras: "1公里内无可用摄像头",
  noPlace: "该告警无位置信息", camerasFailed: "摄像头读取失败", metres: "米",
  actionFailed: "操作被拒绝", zoomIn: "放大", zoomOut: "缩小", hub: "中枢",
  "type.water_level": "水位计", "type.rain_gauge": "雨量计", "type.pipe_pressure": "管网压力计",
  "type.water_quality": "水质站", "type.traffic_flow": "车流检测器", "type.gateway": "车检网关",
  "type.manhole_cover": "井盖", "type.smoke_detector": "烟感", "type.combustible_gas": "燃气探测器",
  "type.bin_fill": "垃圾桶", "type.noise": "噪声监测仪", "type.streetlight": "路灯",
  "type.structure_movement": "结构位移计",
  "metric.water_level": "水位", "metric.rainfall": "雨量", "metric.rain_rate": "雨强",
  "metric.pressure": "压力", "metric.fill_level": "满溢度", "metric.battery": "电量",
  "metric.signal": "信号", "metric.vehicle_count": "车流量", "metric.average_speed": "平均车速",
  "metric.occupancy": "占有率", "metric.tilt_angle": "倾角", "metric.noise_laeq": "等效声级",
  "metric.noise_lamax": "最大声级", "metric.water_temperature": "水温", "metric.water_detected": "积水",
  "metric.turbidity": "浊度", "metric.temperature": "温度", "metric.smoke_obscuration": "烟雾浓度",
  "metric.smoke_alarm": "烟感报警", "metric.ph": "pH", "metric.power": "功率", "metric.lamp_on": "亮灯",
  "metric.gas_lel": "燃气浓度", "metric.dissolved_oxygen": "溶解氧", "metric.displacement_x": "位移X",
  "metric.displacement_y": "位移Y", "metric.cover_open": "井盖开启", "metric.conductivity": "电导率",
  // 应急处置 (response.js, responsemap.js)
  incidents: "事件", incident: "事件", noIncidents: "暂无在办事件", unitsHead: "处置力量",
  awaiting: "待", overdue: "超时", left: "剩余", noLimit: "不限时", escalated: "已上报上级",
  warning: "预警", until: "至",
  "istate.reported": "上报", "istate.registered": "立案", "istate.dispatched": "派遣",
  "istate.in_progress": "处置中", "istate.verified": "核查", "istate.closed": "结案",
  "step.register": "立案", "step.dispatch": "派遣", "step.arrive": "到场",
  "step.handle": "处置核查", "step.close": "结案",
  "ustatus.available": "待命", "ustatus.dispatched": "出动中", "ustatus.on_scene": "在现场",
  "ustatus.off_duty": "休整",
  "ukind.drainage": "排水抢险队", "ukind.traffic_police": "交警", "ukind.fire": "消防救援",
  "ukind.municipal_works": "市政抢修", "ukind.medical": "急救", "ukind.other": "处置单位",
  "ukindShort.drainage": "排", "ukindShort.traffic_police": "警", "ukindShort.fire": "消",
  "ukindShort.municipal_works": "市", "ukindShort.medical": "医", "ukindShort.other": "单",
  "itype.waterlogging": "内涝", "itype.road_hazard": "道路隐患", "itype.fire": "火情",
  "itype.gas_leak": "燃气泄漏", "itype.structure": "结构安全", "itype.water_supply": "供水",
  "itype.traffic": "交通", "itype.sanitation": "环卫", "itype.equipment": "设施故障", "itype.other": "其他",
  "wkind.rainstorm": "暴雨", "wkind.flood": "洪水", "wkind.waterlogging": "内涝", "wkind.typhoon": "台风",
  "wkind.heat": "高温", "wkind.cold": "寒潮", "wkind.fog": "大雾", "wkind.gale": "大风", "wkind.other": "",
};

const TABLES = { en: EN, zh: ZH };
let lang = localStorage.getItem("hub-lang") === "zh" ? "zh" : "en";
const listeners = [];

/** The label for `key` in the current language; falls back to English, then to the key's tail. */
export function t(key) {
  return TABLES[lang][key] ?? EN[key] ?? key.slice(key.indexOf(".") + 1).replaceAll("_", " ");
}

export function language() { return lang; }

/** A name pair from the hub ({name, name_zh}) in the current language. */
export function pick(props) {
  return lang === "zh" && props.name_zh ? props.name_zh : props.name;
}

export function setLanguage(next) {
  lang = next === "zh" ? "zh" : "en";
  localStorage.setItem("hub-lang", lang);
  applyStatic(document);
  for (const fn of listeners) fn(lang);
}

export function onLanguage(fn) { listeners.push(fn); }

/** Fill every element marked data-i18n / data-i18n-title / data-i18n-placeholder under `root`. */
export function applyStatic(root) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}

/** "3 min ago" / "3分钟前". */
export function ago(ms) {
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 10) return t("now");
  const [n, en, zh] = s < 60 ? [s, "s", "秒"] : s < 3600 ? [s / 60, "min", "分钟"] : s < 86400 ? [s / 3600, "h", "小时"] : [s / 86400, "d", "天"];
  return lang === "zh" ? `${Math.floor(n)}${zh}前` : `${Math.floor(n)} ${en} ago`;
}

export function clock(ms) {
  return new Date(ms).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
