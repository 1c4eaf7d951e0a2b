// The libraries every command reads from, named once for the project.
global using System.Diagnostics;
global using System.Globalization;

global using LlavaMech.Datasets.Manifest;
global using LlavaMech.Explanation;
global using LlavaMech.Model;
global using LlavaMech.Model.Devices;
global using LlavaMech.Pipeline;
global using LlavaMech.Reports;
global using LlavaMech.Runtime;
global using LlavaMech.Runtime.Studies;
global using LlavaMech.Storage;
