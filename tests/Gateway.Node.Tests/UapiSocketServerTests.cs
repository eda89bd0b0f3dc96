using System.Net.Sockets;
using System.Text;
using Gateway.Node.Uapi;

namespace Gateway.Node.Tests;

public sealed class UapiSocketServerTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"gw-uapi-{Environment.ProcessId}-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    private static async Task<string> ExchangeAsync(string path, string request, int responses = 1)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        try
        {
            await socket.SendAsync(Encoding.UTF8.GetBytes(request));
        }
        catch (SocketException)
        {
            // the server answered and closed before an oversized request was fully sent
        }
        var received = new StringBuilder();
        var buffer = new byte[4096];
        // Each response ends with an empty line.
        while (CountTerminators(received.ToString()) < responses)
        {
            int n;
            try
            {
                n = await socket.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10));
            }
            catch (SocketException)
            {
                break; // reset after the server closed on unread data; what came before counts
            }
            if (n == 0)
            {
                break;
            }
            received.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }
        return received.ToString();
    }

    private static int CountTerminators(string text)
    {
        int count = 0;
        for (int i = text.IndexOf("\n\n", StringComparison.Ordinal); i >= 0; i = text.IndexOf("\n\n", i + 2, StringComparison.Ordinal))
        {
            count++;
        }
        return count;
    }

    [Fact]
    public async Task AnswersRequestsAndKeepsTheConnectionForMore()
    {
        var seen = new List<string>();
        await using var server = UapiSocketServer.Start("gwtest0", request =>
        {
            lock (seen)
            {
                seen.Add(request);
            }
            return request.StartsWith("get=1") ? "listen_port=51820\nerrno=0\n\n" : "errno=0\n\n";
        }, _dir);
        Assert.Equal(Path.Combine(_dir, "gwtest0.sock"), server.SocketPath);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(server.SocketPath));

        string reply = await ExchangeAsync(server.SocketPath, "get=1\n\nset=1\nlisten_port=1234\n\n", responses: 2);
        Assert.Equal("listen_port=51820\nerrno=0\n\nerrno=0\n\n", reply);
        Assert.Equal(["get=1\n", "set=1\nlisten_port=1234\n"], seen);
    }

    [Fact]
    public async Task UnknownOperationClosesTheConnection()
    {
        await using var server = UapiSocketServer.Start("gwtest1", _ => "errno=0\n\n", _dir);
        string reply = await ExchangeAsync(server.SocketPath, "dance=1\n\n");
        Assert.Equal("", reply);
    }

    [Fact]
    public async Task ReplacesAStaleSocketButRefusesALiveOne()
    {
        await using (var first = UapiSocketServer.Start("gwtest2", _ => "errno=0\n\n", _dir))
        {
            var e = Assert.Throws<IOException>(() => UapiSocketServer.Start("gwtest2", _ => "errno=0\n\n", _dir));
            Assert.Contains("in use", e.Message);
        }
        // A file left behind by a crashed process is not a live server.
        File.WriteAllText(Path.Combine(_dir, "gwtest2.sock"), "");
        await using var second = UapiSocketServer.Start("gwtest2", _ => "errno=0\n\n", _dir);
        Assert.Equal("errno=0\n\n", await ExchangeAsync(second.SocketPath, "get=1\n\n"));
    }

    [Fact]
    public async Task DisposeRemovesTheSocket()
    {
        var server = UapiSocketServer.Start("gwtest3", _ => "errno=0\n\n", _dir);
        string path = server.SocketPath;
        await server.DisposeAsync();
        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task AnEndlessLineIsRefusedWithoutBufferingIt()
    {
        await using var server = UapiSocketServer.Start("gwtest5", _ => "errno=0\n\n", _dir);
        // 1 MiB without a newline: refused once the line passes the bound, not after reading it all.
        string reply = await ExchangeAsync(server.SocketPath, "set=1\nprivate_key=" + new string('a', 1 << 20));
        Assert.Equal("errno=-22\n\n", reply);
        // A line just under the bound is fine for the socket (the protocol judges its content).
        string ok = await ExchangeAsync(server.SocketPath, "set=1\nx=" + new string('b', UapiSocketServer.MaxLineBytes - 3) + "\n\n");
        Assert.Equal("errno=0\n\n", ok);
    }

    [Fact]
    public async Task AnOversizedRequestIsRefused()
    {
        await using var server = UapiSocketServer.Start("gwtest6", _ => "errno=0\n\n", _dir);
        var request = new StringBuilder("set=1\n");
        string line = "allowed_ip=10.0.0.0/8\n";
        while (request.Length <= UapiSocketServer.MaxRequestBytes)
        {
            request.Append(line);
        }
        Assert.Equal("errno=-22\n\n", await ExchangeAsync(server.SocketPath, request.Append('\n').ToString()));
    }

    [Fact]
    public async Task AHandlerThatThrowsAnswersEioAndTheServerKeepsServing()
    {
        int calls = 0;
        await using var server = UapiSocketServer.Start("gwtest7", _ =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                throw new InvalidOperationException("bug");
            }
            return "errno=0\n\n";
        }, _dir);
        Assert.Equal("errno=-5\n\n", await ExchangeAsync(server.SocketPath, "get=1\n\n"));
        Assert.Equal("errno=0\n\n", await ExchangeAsync(server.SocketPath, "get=1\n\n"));
    }
}
