using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Kvasir.Server.Admin;

/// <summary>
/// The admin HTTP endpoint of a node, on Kestrel (docs/operations.md): <c>GET /v1/health</c>,
/// <c>/v1/ready</c>, <c>/v1/status</c>, <c>/v1/cluster</c>, <c>/v1/heatmap</c>, <c>/v1/access-stats</c>, <c>/metrics</c> (Prometheus) and the
/// dashboard at <c>/</c>. With an auth key, everything but health and ready needs
/// <c>Authorization: Bearer TOKEN</c> (or <c>?token=TOKEN</c>, for the dashboard in a browser), where
/// TOKEN is <see cref="Token"/> of the key.
/// </summary>
public sealed class AdminServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly CacheNode _node;
    private readonly string? _token;

    private AdminServer(WebApplication app, CacheNode node, int port)
    {
        _app = app;
        _node = node;
        Port = port;
        _token = node.Options.AuthKey is { } key ? Token(key) : null;
    }

    public int Port { get; }

    /// <summary>The bearer token for a node's auth key: lowercase hex of HMAC-SHA256(key, "KVASIR-ADMIN-1").</summary>
    public static string Token(byte[] authKey) => Convert.ToHexStringLower(HMACSHA256.HashData(authKey, "KVASIR-ADMIN-1"u8));

    /// <summary>Binds and starts serving. Throws <see cref="IOException"/> (address in use) with the reason.</summary>
    public static async Task<AdminServer> StartAsync(CacheNode node, string host, int port)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(o =>
        {
            o.Listen(IPAddress.Parse(host), port);
            o.AddServerHeader = false;
        });
        var app = builder.Build();
        AdminServer? server = null;
        app.Run(ctx => server!.HandleAsync(ctx));
        await app.StartAsync().ConfigureAwait(false);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server = new AdminServer(app, node, new Uri(address).Port);
        return server;
    }

    private async Task HandleAsync(HttpContext ctx)
    {
        var path = ctx.Request.Path.Value ?? "/";
        if (!HttpMethods.IsGet(ctx.Request.Method) && !HttpMethods.IsHead(ctx.Request.Method))
        {
            ctx.Response.StatusCode = 405;
            ctx.Response.Headers.Allow = "GET, HEAD";
            return;
        }
        if (path is not ("/v1/health" or "/v1/ready") && _token is not null && !Authorized(ctx))
        {
            ctx.Response.StatusCode = 401;
            ctx.Response.Headers.WWWAuthenticate = "Bearer realm=\"kvasir\"";
            await WriteJsonAsync(ctx, Error("this node has an auth key: send Authorization: Bearer TOKEN (kvasir admin-token)")).ConfigureAwait(false);
            return;
        }
        switch (path)
        {
            case "/v1/health":
                var problems = _node.Problems();
                ctx.Response.StatusCode = problems.Count == 0 ? 200 : 503;
                await WriteJsonAsync(ctx, AdminReports.Health(_node, problems)).ConfigureAwait(false);
                break;
            case "/v1/ready":
                bool ready = _node.IsServing;
                ctx.Response.StatusCode = ready ? 200 : 503;
                await WriteJsonAsync(ctx, new JsonObject { ["ready"] = ready, ["reason"] = ready ? null : _node.Stopping.IsCancellationRequested ? "draining: the node is stopping" : "starting" }).ConfigureAwait(false);
                break;
            case "/v1/status":
                await WriteJsonAsync(ctx, AdminReports.Status(_node)).ConfigureAwait(false);
                break;
            case "/v1/cluster":
                await WriteJsonAsync(ctx, await ClusterView.ReadAsync(_node).ConfigureAwait(false)).ConfigureAwait(false);
                break;
            case "/v1/heatmap":
                await WriteJsonAsync(ctx, new JsonObject { ["buckets"] = KeyHeatmap.Buckets, ["seconds"] = new JsonArray([.. _node.Heatmap.Snapshot().Select(row => new JsonArray([.. row.Select(n => (JsonNode)n)]))]) }).ConfigureAwait(false);
                break;
            case "/v1/access-stats":
                {
                    // ?last=N: only the newest N accesses (the dashboard asks for a few thousand each refresh).
                    var lastText = ctx.Request.Query["last"].ToString();
                    int last = int.MaxValue;
                    if (lastText.Length > 0 && (!int.TryParse(lastText, out last) || last < 0))
                    {
                        ctx.Response.StatusCode = 400;
                        await WriteJsonAsync(ctx, Error($"last must be a whole number >= 0, not '{lastText}'")).ConfigureAwait(false);
                        break;
                    }
                    ctx.Response.ContentType = "application/json; charset=utf-8";
                    await ctx.Response.Body.WriteAsync(_node.AccessStats.ToJson(_node.NodeId, last)).ConfigureAwait(false);
                    break;
                }
            case "/metrics":
                ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
                await ctx.Response.WriteAsync(_node.Exporter.Render()).ConfigureAwait(false);
                break;
            case "/" or "/index.html":
                ctx.Response.ContentType = "text/html; charset=utf-8";
                ctx.Response.Headers.CacheControl = "no-store";
                await ctx.Response.Body.WriteAsync(Dashboard.Value).ConfigureAwait(false);
                break;
            default:
                ctx.Response.StatusCode = 404;
                await WriteJsonAsync(ctx, Error($"no such endpoint: {path}")).ConfigureAwait(false);
                break;
        }
    }

    private bool Authorized(HttpContext ctx)
    {
        var header = ctx.Request.Headers.Authorization.ToString();
        var given = header.StartsWith("Bearer ", StringComparison.Ordinal) ? header[7..].Trim() : ctx.Request.Query["token"].ToString();
        return given.Length == _token!.Length
            && CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(given), Encoding.ASCII.GetBytes(_token));
    }

    private static JsonObject Error(string message) => new() { ["error"] = message };

    // JSON trees, not reflection over anonymous types: the native AOT build writes them alike (docs/deploy.md).
    private static Task WriteJsonAsync(HttpContext ctx, JsonNode value)
    {
        ctx.Response.ContentType = "application/json; charset=utf-8";
        return ctx.Response.WriteAsync(value.ToJsonString());
    }

    private static readonly Lazy<byte[]> Dashboard = new(() =>
    {
        using var stream = typeof(AdminServer).Assembly.GetManifestResourceStream("Kvasir.Server.Admin.dashboard.html")
            ?? throw new InvalidOperationException("dashboard.html is not embedded");
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        return buffer.ToArray();
    });

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _app.StopAsync(timeout.Token).ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
