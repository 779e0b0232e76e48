using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Kvasir.Server.Admin;

/// <summary>
/// Listens to the "Kvasir.Node" meter and renders the Prometheus text exposition format (0.0.4):
/// counters as <c>NAME_total</c>, gauges as <c>NAME</c>, histograms as cumulative <c>_bucket</c>
/// series with <c>le</c> labels plus <c>_sum</c> and <c>_count</c>; units go into the name
/// (<c>_seconds</c>, <c>_bytes</c>). Measurements are aggregated as they arrive (interlocked adds on
/// a series found by its tag values); observable instruments are read at scrape time.
/// </summary>
public sealed class PrometheusExporter : IDisposable
{
    /// <summary>Upper bounds of the duration histogram buckets, in seconds.</summary>
    public static readonly double[] Buckets = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<Instrument, Family> _families = new();
    private readonly Lock _scrape = new();

    public PrometheusExporter(Meter meter)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter != meter) return;
            _families[instrument] = new Family(instrument);
            listener.EnableMeasurementEvents(instrument, _families[instrument]);
        };
        _listener.SetMeasurementEventCallback<long>((_, value, tags, state) => ((Family)state!).Add(value, tags));
        _listener.SetMeasurementEventCallback<double>((_, value, tags, state) => ((Family)state!).Add(value, tags));
        _listener.SetMeasurementEventCallback<int>((_, value, tags, state) => ((Family)state!).Add(value, tags));
        _listener.Start();
    }

    /// <summary>The whole exposition, every family in a stable order.</summary>
    public string Render()
    {
        lock (_scrape)
        {
            foreach (var f in _families.Values) if (f.Observable) f.ClearGauges();
            _listener.RecordObservableInstruments();
            var sb = new StringBuilder();
            foreach (var f in _families.Values.OrderBy(f => f.Instrument.Name, StringComparer.Ordinal)) f.Render(sb);
            return sb.ToString();
        }
    }

    public void Dispose() => _listener.Dispose();

    private sealed class Series(string labels)
    {
        public readonly string Labels = labels;
        public long Count;
        private long _bits;   // a double: gauges and counters, the sum for histograms
        public readonly long[] BucketCounts = new long[Buckets.Length];

        public double Value
        {
            get => BitConverter.Int64BitsToDouble(Interlocked.Read(ref _bits));
            set => Interlocked.Exchange(ref _bits, BitConverter.DoubleToInt64Bits(value));
        }

        /// <summary>Lock-free add (compare-and-swap on the bits).</summary>
        public void AddDouble(double v)
        {
            long seen = Interlocked.Read(ref _bits);
            while (true)
            {
                long next = BitConverter.DoubleToInt64Bits(BitConverter.Int64BitsToDouble(seen) + v);
                long was = Interlocked.CompareExchange(ref _bits, next, seen);
                if (was == seen) return;
                seen = was;
            }
        }

        public void Observe(double v)
        {
            int i = 0;
            while (i < Buckets.Length && v > Buckets[i]) i++;
            if (i < Buckets.Length) Interlocked.Increment(ref BucketCounts[i]);
            Interlocked.Increment(ref Count);
            AddDouble(v);
        }
    }

    private sealed class Family(Instrument instrument)
    {
        private readonly ConcurrentDictionary<string, Series> _series = new(StringComparer.Ordinal);
        private readonly ConcurrentDictionary<object, ConcurrentDictionary<object, Series>> _byTags = new(ReferenceEqualityComparer.Instance);

        public Instrument Instrument { get; } = instrument;
        public bool Observable => Instrument.IsObservable;
        private bool IsHistogram => Instrument is Histogram<double> or Histogram<long>;
        private bool IsCounter => Instrument.GetType().Name.Contains("Counter", StringComparison.Ordinal) && !Instrument.GetType().Name.Contains("UpDown", StringComparison.Ordinal);
        private bool IsObservableCounter => Observable && IsCounter;

        public string Name
        {
            get
            {
                var unit = Instrument.Unit switch { "s" => "_seconds", "By" => "_bytes", _ => "" };
                var name = Instrument.Name.EndsWith(unit, StringComparison.Ordinal) ? Instrument.Name : Instrument.Name + unit;
                return IsCounter ? name + "_total" : name;
            }
        }

        public void ClearGauges() => _series.Clear();

        public void Add(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var series = Find(tags);
            if (IsHistogram) series.Observe(value);
            else if (Observable) { series.Value = value; series.Count = 1; }   // observed totals and gauges: the latest value
            else series.AddDouble(value);
        }

        private Series Find(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            // The data path passes cached tag arrays of interned values: the first and last tag value
            // objects identify the series by reference, with no string built and nothing allocated.
            // Observable callbacks pass fresh tags: they go by label text.
            if (!Observable && tags.Length > 0 && tags[0].Value is { } first && tags[^1].Value is { } last
                && _byTags.TryGetValue(first, out var inner) && inner.TryGetValue(last, out var cached))
                return cached;
            var labels = Labels(tags);
            var series = _series.GetOrAdd(labels, l => new Series(l));
            if (!Observable && tags.Length > 0 && tags[0].Value is { } f && tags[^1].Value is { } l)
                _byTags.GetOrAdd(f, _ => new ConcurrentDictionary<object, Series>(ReferenceEqualityComparer.Instance)).TryAdd(l, series);
            return series;
        }

        private static string Labels(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (tags.Length == 0) return "";
            var parts = new List<string>();
            foreach (var (k, v) in tags) parts.Add($"{k}=\"{Escape(Convert.ToString(v, CultureInfo.InvariantCulture) ?? "")}\"");
            parts.Sort(StringComparer.Ordinal);
            return string.Join(",", parts);
        }

        private static string Escape(string s) => s.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");

        public void Render(StringBuilder sb)
        {
            var name = Name;
            var type = IsHistogram ? "histogram" : IsCounter ? "counter" : "gauge";
            sb.Append("# HELP ").Append(name).Append(' ').Append(Escape(Instrument.Description ?? Instrument.Name)).Append('\n');
            sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            foreach (var s in _series.Values.OrderBy(s => s.Labels, StringComparer.Ordinal))
            {
                if (IsHistogram)
                {
                    var baseName = name;
                    // Observations land while this runs (bucket first, then count): read the count
                    // first and cap every bucket at it, so the buckets stay cumulative and +Inf == _count.
                    long count = Interlocked.Read(ref s.Count);
                    long cumulative = 0;
                    for (int i = 0; i < Buckets.Length; i++)
                    {
                        cumulative = Math.Min(count, cumulative + Interlocked.Read(ref s.BucketCounts[i]));
                        Line(sb, baseName + "_bucket", Join(s.Labels, $"le=\"{Buckets[i].ToString("0.#########", CultureInfo.InvariantCulture)}\""), cumulative);
                    }
                    Line(sb, baseName + "_bucket", Join(s.Labels, "le=\"+Inf\""), count);
                    Line(sb, baseName + "_sum", s.Labels, s.Value);
                    Line(sb, baseName + "_count", s.Labels, count);
                }
                else Line(sb, name, s.Labels, s.Value);
            }
        }

        private static string Join(string labels, string extra) => labels.Length == 0 ? extra : labels + "," + extra;

        private static void Line(StringBuilder sb, string name, string labels, double value)
        {
            sb.Append(name);
            if (labels.Length > 0) sb.Append('{').Append(labels).Append('}');
            sb.Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }
    }
}
