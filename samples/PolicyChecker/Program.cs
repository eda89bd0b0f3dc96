// A policy checker built on Gateway.Policy alone: it loads endpoints (name, namespace, IPs, labels)
// and CiliumNetworkPolicy / Kubernetes NetworkPolicy YAML, then answers one query per input line:
//
//   FROM TO PORT          e.g.  default/frontend default/backend 80/TCP
//                               10.0.0.1 10.0.0.2 53/UDP
//                               app=frontend reserved:world 8/ICMP
//
// with ALLOWED or DENIED and the rule (or default deny) that decided, at the source's egress and
// at the destination's ingress, exactly as a node's datapath decides.
//
//   dotnet run -- ENDPOINTS.yaml POLICY.yaml|POLICY-FOLDER < queries.txt
using Gateway.Policy;

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: PolicyChecker ENDPOINTS.yaml POLICY.yaml|FOLDER  (queries on standard input: FROM TO PORT/PROTO)");
    return 2;
}

EndpointTable endpoints;
PolicySet policies;
try
{
    endpoints = EndpointFile.Load(args[0], new IdentityAllocator());
    policies = PolicyLoader.Load(args[1]);
}
catch (Exception e) when (e is PolicyLoadException or IOException)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}

int denied = 0;
string? line;
while ((line = Console.ReadLine()) is not null)
{
    string[] words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
    if (words.Length == 0 || words[0].StartsWith('#'))
    {
        continue;
    }
    if (words.Length != 3)
    {
        Console.WriteLine($"{line}: not a query (FROM TO PORT/PROTO)");
        continue;
    }
    if (!PolicyTracer.TryParsePort(words[2], out byte protocol, out ushort port, out string? error))
    {
        Console.WriteLine($"{line}: {error}");
        continue;
    }
    try
    {
        var result = PolicyTracer.Trace(policies, endpoints, words[0], words[1], protocol, port);
        Console.WriteLine($"{line}: {(result.Allowed ? "ALLOWED" : "DENIED")}");
        foreach (string detail in result.ToText().Split('\n', StringSplitOptions.RemoveEmptyEntries)[3..5])
        {
            Console.WriteLine("  " + detail);
        }
        denied += result.Allowed ? 0 : 1;
    }
    catch (ArgumentException e)
    {
        Console.WriteLine($"{line}: {e.Message}");
    }
}
// Exit status 1 when any query was denied, so scripts can use it as a check.
return denied > 0 ? 1 : 0;
