using Gateway.Node.Daemon;
using Microsoft.Extensions.Hosting;

namespace Gateway.Node.Hosting;

/// <summary>
/// A <see cref="WireGuardNode"/> as a hosted service of a Microsoft.Extensions.Hosting generic host:
/// the host starts the node with the other services (a host with <c>AddSystemd()</c> tells systemd
/// READY=1 only after every service started, so after the node is up) and stops it when the host
/// stops (SIGTERM, Ctrl+C, <see cref="IHostApplicationLifetime.StopApplication"/>). When the node
/// stops on its own (a data-path thread failed) the service stops the whole application, so a
/// service manager sees the process end and can restart it.
/// </summary>
public sealed class WireGuardNodeService : IHostedService, IAsyncDisposable
{
    private readonly Func<WireGuardNodeOptions> _options;
    private readonly IHostApplicationLifetime? _lifetime;
    private CancellationTokenRegistration _failed;
    private WireGuardNode? _node;

    /// <param name="options">Builds the node's options when the host starts (the node takes ownership
    /// of the devices and the configuration's lifetime stays with the caller).</param>
    /// <param name="lifetime">The host's lifetime, stopped when the node fails; null: nothing is stopped.</param>
    public WireGuardNodeService(Func<WireGuardNodeOptions> options, IHostApplicationLifetime? lifetime = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _lifetime = lifetime;
    }

    /// <summary>The running node (null before <see cref="StartAsync"/> and after <see cref="StopAsync"/>).</summary>
    public WireGuardNode? Node => Volatile.Read(ref _node);

    /// <summary>True when the node stopped on its own rather than being stopped by the host.</summary>
    public bool NodeFailed { get; private set; }

    /// <summary>Starts the node; a failure to start propagates and the host does not start.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var node = WireGuardNode.Start(_options());
        Volatile.Write(ref _node, node);
        _failed = node.Failed.Register(() =>
        {
            NodeFailed = true;
            _lifetime?.StopApplication();
        });
        return Task.CompletedTask;
    }

    /// <summary>Stops the node (PreDown, interface removed, PostDown).</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        var node = Interlocked.Exchange(ref _node, null);
        if (node is null)
        {
            return;
        }
        await _failed.DisposeAsync().ConfigureAwait(false);
        await node.DisposeAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None).ConfigureAwait(false);
}
