using Gateway.Tunnel.Uapi;

namespace Gateway.Tunnel.Tests;

/// <summary>UAPI requests are bounded per line and in total (issue 14, item 5).</summary>
public class UapiBoundsTests
{
    [Fact]
    public void A_line_longer_than_the_bound_is_refused()
    {
        string key = new('1', 64);
        Assert.Equal(UapiErrno.Ok, UapiProtocol.ParseSet($"public_key={key}\nallowed_ip=10.0.0.0/8\n\n", out var ok));
        ok!.Dispose();
        string longLine = "allowed_ip=" + new string('1', UapiProtocol.MaxLineLength);
        Assert.Equal(UapiErrno.Invalid, UapiProtocol.ParseSet($"public_key={key}\n{longLine}\n\n", out var refused));
        Assert.Null(refused);
    }

    [Fact]
    public void A_request_larger_than_the_bound_is_refused_before_parsing()
    {
        var body = new System.Text.StringBuilder($"public_key={new string('2', 64)}\n");
        while (body.Length <= UapiProtocol.MaxRequestLength)
        {
            body.Append("allowed_ip=10.0.0.0/8\n");
        }
        Assert.Equal(UapiErrno.Invalid, UapiProtocol.ParseSet(body.ToString(), out var refused));
        Assert.Null(refused);
    }
}
