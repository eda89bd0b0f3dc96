using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Gateway.Cluster.Tests;

/// <summary>
/// A real etcd (Debian's etcd-server) for one test: 127.0.0.1 on free ports, a temporary data
/// directory, optionally TLS with client-certificate auth. Started under a
/// watchdog shell so it dies with the test host even on a crash; Dispose kills it
/// and deletes the directory. <see cref="Stop"/> and <see cref="Start"/> restart it on the same
/// ports and data. Tests call <see cref="SkipUnlessInstalled"/> first.
/// </summary>
public sealed class EtcdServer : IDisposable
{
    private const string Binary = "/usr/bin/etcd";
    private static int _counter;
    private Process? _process;

    public EtcdServer(TlsFiles? tls = null)
    {
        Directory = Path.Combine(Path.GetTempPath(), $"gw-etcd-{Environment.ProcessId}-{Interlocked.Increment(ref _counter)}");
        System.IO.Directory.CreateDirectory(Directory);
        Tls = tls;
        ClientPort = FreePort();
        PeerPort = FreePort();
        try
        {
            Start();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public static bool Installed => File.Exists(Binary);

    public static void SkipUnlessInstalled() =>
        Skip.IfNot(Installed, $"etcd is not installed ({Binary} missing; scripts/setup.sh installs Debian's etcd-server)");

    public string Directory { get; }
    public TlsFiles? Tls { get; }
    public int ClientPort { get; }
    public int PeerPort { get; }
    public string Url => $"{(Tls is null ? "http" : "https")}://127.0.0.1:{ClientPort}";
    public string LogFile => Path.Combine(Directory, "etcd.log");

    public KvStoreOptions Options(TimeSpan? ttl = null, bool withClientCert = true, string? cluster = null) =>
        KvStoreOptions.Parse(Url, Tls?.Ca, withClientCert ? Tls?.ClientCert : null, withClientCert ? Tls?.ClientKey : null, ttl, cluster);

    public void Start()
    {
        if (_process is { HasExited: false })
        {
            return;
        }
        string scheme = Tls is null ? "http" : "https";
        var args = new List<string>
        {
            "--name", "gw-test",
            "--data-dir", Path.Combine(Directory, "data"),
            "--listen-client-urls", $"{scheme}://127.0.0.1:{ClientPort}",
            "--advertise-client-urls", $"{scheme}://127.0.0.1:{ClientPort}",
            "--listen-peer-urls", $"http://127.0.0.1:{PeerPort}",
            "--initial-advertise-peer-urls", $"http://127.0.0.1:{PeerPort}",
            "--initial-cluster", $"gw-test=http://127.0.0.1:{PeerPort}",
            "--log-outputs", LogFile,
            "--logger", "zap",
        };
        if (Tls is not null)
        {
            args.AddRange(["--cert-file", Tls.ServerCert, "--key-file", Tls.ServerKey, "--trusted-ca-file", Tls.Ca, "--client-cert-auth"]);
        }
        // A watchdog shell owns etcd: it kills etcd as soon as the test host is gone (even after a
        // crash that runs no Dispose). PR_SET_PDEATHSIG would not do: it follows the thread that
        // forked, and .NET forks from pool threads that come and go.
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add($"{Binary} \"$@\" & e=$!; while kill -0 {Environment.ProcessId} 2>/dev/null && kill -0 $e 2>/dev/null; do sleep 0.5; done; kill -9 $e 2>/dev/null; wait $e");
        psi.ArgumentList.Add("etcd-watchdog");
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var watch = Stopwatch.StartNew();
        while (!Ready())
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"etcd exited with {_process.ExitCode}: {Tail()}");
            }
            if (watch.Elapsed > TimeSpan.FromSeconds(30))
            {
                Stop();
                throw new TimeoutException($"etcd did not become ready in 30 s: {Tail()}");
            }
            Thread.Sleep(50);
        }
    }

    /// <summary>Kills etcd (SIGKILL, like a crash); data stays for <see cref="Start"/>.</summary>
    public void Stop()
    {
        if (_process is null)
        {
            return;
        }
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
        _process = null;
    }

    public void Dispose()
    {
        Stop();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private bool Ready()
    {
        try
        {
            return File.Exists(LogFile) && File.ReadAllText(LogFile).Contains("serving client traffic", StringComparison.Ordinal) && PortOpen();
        }
        catch (IOException)
        {
            return false;
        }
    }

    private bool PortOpen()
    {
        try
        {
            using var c = new TcpClient();
            c.Connect(IPAddress.Loopback, ClientPort);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private string Tail()
    {
        try
        {
            var lines = File.ReadAllLines(LogFile);
            return string.Join(" | ", lines.TakeLast(5));
        }
        catch (IOException)
        {
            return "(no log)";
        }
    }

    /// <summary>A port nobody listens on now (bound then released).</summary>
    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}

/// <summary>A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl.</summary>
public sealed class TlsFiles
{
    private TlsFiles(string dir)
    {
        Directory = dir;
    }

    public string Directory { get; }
    public string Ca => Path.Combine(Directory, "ca.pem");
    public string ServerCert => Path.Combine(Directory, "server.pem");
    public string ServerKey => Path.Combine(Directory, "server-key.pem");
    public string ClientCert => Path.Combine(Directory, "client.pem");
    public string ClientKey => Path.Combine(Directory, "client-key.pem");

    public static TlsFiles Create(string dir)
    {
        System.IO.Directory.CreateDirectory(dir);
        var t = new TlsFiles(dir);
        File.WriteAllText(Path.Combine(dir, "server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
        File.WriteAllText(Path.Combine(dir, "client.ext"), "extendedKeyUsage=clientAuth\n");
        OpenSsl(dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=gateway-test-ca");
        foreach (var (name, cn) in new[] { ("server", "127.0.0.1"), ("client", "gateway-node") })
        {
            OpenSsl(dir, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", $"{name}-key.pem", "-out", $"{name}.csr", "-subj", $"/CN={cn}");
            OpenSsl(dir, "x509", "-req", "-in", $"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-out", $"{name}.pem", "-days", "2", "-extfile", $"{name}.ext");
        }
        return t;
    }

    private static void OpenSsl(string dir, params string[] args)
    {
        var psi = new ProcessStartInfo("openssl") { WorkingDirectory = dir, RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"openssl {string.Join(' ', args)} failed: {err}");
        }
    }
}
